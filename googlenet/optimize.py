"""Speed-ups for a trained or training GoogLeNet, as explicit functions that return a new model.

The plain :class:`googlenet.GoogLeNet` stays the readable model the book teaches; these functions
rewrite a copy of it. Each one computes the same function as the plain model (the tests check it):

- :func:`fuse_inception_1x1`: an Inception module has three 1x1 convolutions that read the same
  input (branch 1, and the reductions in front of the 3x3 and 5x5 convolutions). They become one
  convolution with their output channels stacked, whose output is split. Batch norm normalises
  each channel on its own, so this is exact in training too.
- :func:`fold_batchnorm`: in inference, batch norm is a fixed per-channel scale and shift, which
  folds into the convolution before it (PyTorch's ``fuse_conv_bn_eval``). Inference only: the
  folded model has no batch statistics.
- :func:`optimize_for_training`: the fusion plus the channels-last memory layout.
- :func:`optimize_for_inference`: fusion and folding, plus eval mode and the channels-last layout.

Channels-last (NHWC) stores the channels of a pixel next to each other. It changes no number, only
the layout; on CPUs it is what oneDNN's convolution and pooling kernels are fastest with.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .model import ConvBlock, Inception

__all__ = [
    "FusedInception", "fuse_inception_1x1", "fold_batchnorm", "optimize_for_training",
    "optimize_for_inference", "plain_state_dict",
]


class FusedInception(nn.Module):
    """An Inception module whose three input-reading 1x1 convolutions run as one convolution."""

    def __init__(
        self, reduce: ConvBlock, splits: tuple[int, int, int],
        branch2: nn.Module, branch3: nn.Module, branch4: nn.Module,
    ) -> None:
        super().__init__()
        self.reduce = reduce  # 1x1 for branch 1, then the 3x3 and 5x5 reductions, stacked
        self.splits = splits
        self.branch2, self.branch3, self.branch4 = branch2, branch3, branch4

    def forward(self, x: Tensor) -> Tensor:
        b1, r2, r3 = torch.split(self.reduce(x), self.splits, dim=1)
        return torch.cat([b1, self.branch2(r2), self.branch3(r3), self.branch4(x)], 1)


def _stack_conv_blocks(blocks: list[ConvBlock]) -> ConvBlock:
    """One ConvBlock whose output channels are the given 1x1 blocks' outputs, in order."""
    first = blocks[0]
    batch_norm = isinstance(first.bn, nn.BatchNorm2d)
    out_channels = sum(b.conv.out_channels for b in blocks)
    fused = ConvBlock(first.conv.in_channels, out_channels, batch_norm, kernel_size=1)
    fused = fused.to(device=first.conv.weight.device, dtype=first.conv.weight.dtype)
    with torch.no_grad():
        fused.conv.weight.copy_(torch.cat([b.conv.weight for b in blocks]))
        if fused.conv.bias is not None:
            fused.conv.bias.copy_(torch.cat([b.conv.bias for b in blocks]))
        if batch_norm:
            fused.bn.eps, fused.bn.momentum = first.bn.eps, first.bn.momentum
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(fused.bn, name).copy_(torch.cat([getattr(b.bn, name) for b in blocks]))
            fused.bn.num_batches_tracked.copy_(first.bn.num_batches_tracked)
    fused.train(first.training)
    return fused


def _fuse_module(m: Inception) -> FusedInception:
    """The FusedInception that computes what the Inception module ``m`` computes."""
    blocks = [m.branch1, m.branch2[0], m.branch3[0]]
    splits = tuple(b.conv.out_channels for b in blocks)
    fused = FusedInception(_stack_conv_blocks(blocks), splits, m.branch2[1], m.branch3[1], m.branch4)
    return fused.train(m.training)


def fuse_inception_1x1(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Inception module's three parallel 1x1 convolutions fused.

    Valid in training and inference (batch norm statistics are per channel). The copy's
    state_dict has different keys from the plain model's: save and load the plain model.
    """
    model = copy.deepcopy(model)
    for name, child in list(model.named_modules()):
        if isinstance(child, Inception):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, _fuse_module(child))
    return model


def plain_state_dict(model: nn.Module, tensors: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The plain model's keys and shapes for a fused model's ``state_dict()``: saves fused training.

    ``tensors`` defaults to ``model.state_dict()``; any dict with the same keys (such as the
    parameters' gradients) is converted the same way. Not for models with folded batch norm.
    """
    tensors = dict(model.state_dict() if tensors is None else tensors)
    for prefix, m in model.named_modules():
        if not isinstance(m, FusedInception):
            continue
        p = f"{prefix}." if prefix else ""
        targets = [f"{p}branch1.", f"{p}branch2.0.", f"{p}branch3.0."]
        for key in [k for k in tensors if k.startswith(p)]:
            rest = key[len(p):]
            if rest.startswith("reduce."):
                value, suffix = tensors.pop(key), rest[len("reduce."):]
                parts = [value] * 3 if value.dim() == 0 else torch.split(value, m.splits)
                tensors.update({t + suffix: v.clone() for t, v in zip(targets, parts, strict=True)})
            elif rest.startswith(("branch2.", "branch3.")):
                tensors[f"{p}{rest[:8]}1.{rest[8:]}"] = tensors.pop(key)
    return tensors


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each batch norm folded into the convolution before it.

    Works on any block with ``.conv`` (Conv2d) and ``.bn`` (BatchNorm2d) attributes, such as our
    ConvBlock and torchvision's BasicConv2d. Inference only: the copy uses the running
    statistics and has no batch norm left to train, so do not call ``.train()`` on it.
    """
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            block.conv, block.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def optimize_for_training(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """A copy to train faster: fused 1x1 convolutions and (by default) the channels-last layout."""
    model = fuse_inception_1x1(model)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy for fast inference: fused 1x1 convolutions, folded batch norm, NHWC layout.

    Inputs may stay in the usual NCHW layout: a channels-last first convolution makes its output
    channels-last, and the layout carries through the network.
    """
    model = fold_batchnorm(fuse_inception_1x1(model)).requires_grad_(False)
    return model.to(memory_format=torch.channels_last) if channels_last else model
