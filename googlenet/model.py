"""GoogLeNet (Inception-v1) in plain PyTorch, built from the paper's Table 1.

Two variants share one code path:
- ``"paper"``: as published (5x5 branch, local response normalisation, no batch norm).
- ``"torchvision"``: the layout and module names of ``torchvision.models.googlenet``
  (batch norm, 3x3 where the paper has 5x5), so its weights load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .architecture import (
    AUX_AFTER,
    AUX_CONV_CHANNELS,
    AUX_FC_UNITS,
    AUX_LOSS_WEIGHT,
    INCEPTION_ROWS,
    STEM_CHANNELS,
    Row,
    inception_out_channels,
)

VARIANTS = ("paper", "torchvision")
STEMS = ("imagenet", "small")
DEFAULT_DROPOUT = {"paper": 0.4, "torchvision": 0.2}  # torchvision lowered the paper's 40%
BN_EPS = 0.001  # torchvision's value (inherited from the TensorFlow port)
# torchvision's `transform_input`: turns ImageNet-normalised input into the [-1, 1] scaling
# the ported weights expect, channel by channel (x * scale + shift).
# ImageNet's per-channel mean and std (of images in [0, 1]): what torchvision's ImageNet weights expect
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# transform_input: torchvision's ImageNet file expects inputs normalised as (x - 0.5) / 0.5
_TRANSFORM_SCALE = tuple(s / 0.5 for s in IMAGENET_STD)
_TRANSFORM_SHIFT = tuple((m - 0.5) / 0.5 for m in IMAGENET_MEAN)


class GoogLeNetOutputs(NamedTuple):
    """What a training-mode forward with auxiliary heads returns (torchvision's order)."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


class ConvBlock(nn.Module):
    """Convolution, optional batch norm, ReLU: every convolution in GoogLeNet is one of these."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not batch_norm, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->5x5; 3x3 max pool->1x1), concatenated on channels.

    The 1x1 convolutions in front of the 3x3 and 5x5 ones are the paper's "dimension reduction":
    they shrink the channel count before the expensive spatial convolutions.
    ``kernel5`` is 5 in the paper and 3 in torchvision's port.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        batch_norm: bool = True,
        kernel5: int = 5,
        conv_block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        conv = partial(conv_block or ConvBlock, batch_norm=batch_norm)
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1),
            conv(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1),
            conv(ch5x5red, ch5x5, kernel_size=kernel5, padding=kernel5 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg pool to 4x4, 1x1 conv (128), FC 1024, dropout, FC (section 5)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        batch_norm: bool = True,
        dropout: float = 0.7,
        pool: nn.Module | None = None,
        conv_block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        # The paper pools 5x5/3 (14x14 -> 4x4 at 224 px); torchvision pools adaptively to 4x4.
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d((4, 4))
        conv = conv_block or ConvBlock
        self.conv = conv(in_channels, AUX_CONV_CHANNELS, batch_norm=batch_norm, kernel_size=1)
        self.fc1 = nn.Linear(AUX_CONV_CHANNELS * 4 * 4, AUX_FC_UNITS)
        self.fc2 = nn.Linear(AUX_FC_UNITS, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


def channels(row: Row) -> tuple[int, int, int, int, int, int]:
    """An Inception row's six channel columns, in :class:`Inception`'s argument order."""
    return row.n1x1, row.n3x3_reduce, row.n3x3, row.n5x5_reduce, row.n5x5, row.pool_proj


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p!r}")


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception-v1 (Szegedy et al., 2015), built from :data:`PAPER_TABLE1`.

    Args:
        num_classes: size of the classifier's output.
        variant: ``"paper"`` (as published) or ``"torchvision"`` (weight-compatible with
            ``torchvision.models.googlenet``).
        aux_logits: build the two auxiliary classifiers (used in training mode only).
        in_channels: 3 for RGB, 1 for grayscale.
        stem: ``"imagenet"`` (7x7/2 convolution, for 224 px) or ``"small"`` (3x3/1 convolution,
            for 28-64 px images such as Fashion-MNIST and CIFAR-10).
        dropout: before the classifier; None means the variant's own (0.4 paper, 0.2 torchvision).
        dropout_aux: inside the auxiliary heads (0.7 in both).
        transform_input: torchvision's input re-scaling used by its ImageNet weights.
        blocks: ``[conv_block, inception_block, inception_aux_block]`` to build from, as in
            torchvision (default ``[ConvBlock, Inception, InceptionAux]``): swap in your own to change
            the normalisation or activation, or to add a layer, without editing the package. The
            convolution block is called as ``conv_block(in_channels, out_channels, batch_norm=...,
            **conv_kwargs)``; the other two with the arguments of :class:`Inception` and
            :class:`InceptionAux`, plus ``conv_block=``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        variant: str = "paper",
        aux_logits: bool = True,
        in_channels: int = 3,
        stem: str = "imagenet",
        dropout: float | None = None,
        dropout_aux: float = 0.7,
        transform_input: bool = False,
        blocks: Sequence[Callable[..., nn.Module]] | None = None,
    ) -> None:
        super().__init__()
        if blocks is not None and len(blocks) != 3:
            raise ValueError(f"blocks takes 3 callables (conv, inception, aux), got {len(blocks)}")
        conv_block, inception_block, aux_block = blocks or (ConvBlock, Inception, InceptionAux)
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; expected one of {STEMS}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an integer >= 1, got {in_channels!r}")
        dropout = DEFAULT_DROPOUT[variant] if dropout is None else dropout
        _check_probability("dropout", dropout)
        _check_probability("dropout_aux", dropout_aux)
        if transform_input and in_channels != 3:
            raise ValueError("transform_input re-scales 3 RGB channels; it needs in_channels=3")

        self.variant, self.stem, self.in_channels = variant, stem, in_channels
        self.aux_logits, self.transform_input = aux_logits, transform_input
        paper = variant == "paper"
        bn, k5 = not paper, (5 if paper else 3)  # torchvision's port has 3x3 where the paper has 5x5
        # BVLC Caffe GoogLeNet (pool1/norm1, conv2/norm2): size 5, alpha 1e-4, beta 0.75, k 1
        lrn = (lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)) if paper else nn.Identity
        c1, c2, c3 = STEM_CHANNELS["conv1"], STEM_CHANNELS["conv2"], STEM_CHANNELS["conv3"]
        rows = {r.name: r for r in INCEPTION_ROWS}

        def inception(name: str, in_ch: int) -> Inception:
            return inception_block(in_ch, *channels(rows[name]), batch_norm=bn, kernel5=k5,
                                   conv_block=conv_block)

        def width(name: str) -> int:  # channels a module outputs: its four branches concatenated
            return inception_out_channels(rows[name])

        if stem == "imagenet":
            self.conv1 = conv_block(in_channels, c1, batch_norm=bn, kernel_size=7, stride=2, padding=3)
        else:  # keep full resolution: 32 px reaches the Inception modules at 8x8
            self.conv1 = conv_block(in_channels, c1, batch_norm=bn, kernel_size=3, stride=1, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = conv_block(c1, c2, batch_norm=bn, kernel_size=1)
        self.conv3 = conv_block(c2, c3, batch_norm=bn, kernel_size=3, padding=1)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = inception("inception3a", c3)
        self.inception3b = inception("inception3b", width("inception3a"))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception("inception4a", width("inception3b"))
        self.inception4b = inception("inception4b", width("inception4a"))
        self.inception4c = inception("inception4c", width("inception4b"))
        self.inception4d = inception("inception4d", width("inception4c"))
        self.inception4e = inception("inception4e", width("inception4d"))
        self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)  # torchvision: 2x2/2
        self.inception5a = inception("inception5a", width("inception4e"))
        self.inception5b = inception("inception5b", width("inception5a"))

        if aux_logits:
            # the paper pools 5x5/3 (14x14 -> 4x4 at 224 px); torchvision pools adaptively to 4x4
            pool = (lambda: nn.AvgPool2d(5, stride=3)) if paper and stem == "imagenet" else lambda: None
            aux = {"batch_norm": bn, "dropout": dropout_aux, "conv_block": conv_block}
            self.aux1 = aux_block(width(AUX_AFTER["aux1"]), num_classes, pool=pool(), **aux)
            self.aux2 = aux_block(width(AUX_AFTER["aux2"]), num_classes, pool=pool(), **aux)
        else:
            self.aux1 = self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(width("inception5b"), num_classes)
        self.min_input_size = _min_input_size(self)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: Tensor) -> Tensor:
        if not self.transform_input:
            return x
        scale = x.new_tensor(_TRANSFORM_SCALE).view(1, 3, 1, 1)
        shift = x.new_tensor(_TRANSFORM_SHIFT).view(1, 3, 1, 1)
        return x * scale + shift

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError that says what is wrong and what is expected, before any layer runs."""
        if not isinstance(x, Tensor):
            raise TypeError(f"GoogLeNet expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(
                f"GoogLeNet expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}; "
                "for a single image use x.unsqueeze(0)"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"GoogLeNet expects a floating-point tensor, got {x.dtype}; "
                "convert with x.float() (and scale uint8 images to [0, 1])"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); build the model with in_channels={x.shape[1]} "
                "or convert the images"
            )
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            hint = ' or use stem="small" for small images' if self.stem == "imagenet" else ""
            raise ValueError(
                f"input of {h}x{w} px is too small for the {self.stem!r} stem: it needs at least "
                f"{self.min_input_size}x{self.min_input_size} px; resize the images{hint}"
            )
        if self.training and self.aux1 is not None and isinstance(self.aux1.pool, nn.AvgPool2d):
            side = _feature_sizes(self, h)["inception4a"], _feature_sizes(self, w)["inception4a"]
            if any((s - 5) // 3 + 1 != 4 for s in side):
                raise ValueError(
                    f"the paper's auxiliary heads pool 5x5/3 to 4x4, which needs 209-256 px input "
                    f"in training mode, got {h}x{w}; use 224 px, aux_logits=False or "
                    'variant="torchvision"'
                )

    def features(self, x: Tensor) -> Tensor:
        """Stem and the nine Inception modules, without heads: the final 1024-channel map."""
        return self._forward(x, with_aux=False)[0]

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x = self._transform_input(x)
        x = self.lrn1(self.maxpool1(self.conv1(x)))
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x)), aux2, aux1

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        """Logits in eval mode; in training mode with aux heads, :class:`GoogLeNetOutputs`."""
        self.check_input(x)
        with_aux = self.training and self.aux1 is not None
        x, aux2, aux1 = self._forward(x, with_aux)
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


def googlenet_loss(
    outputs: Tensor | GoogLeNetOutputs,
    targets: Tensor,
    *,
    aux_weight: float = AUX_LOSS_WEIGHT,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of the main logits plus ``aux_weight`` times each auxiliary head's (paper: 0.3)."""
    ce = lambda logits: F.cross_entropy(logits, targets, label_smoothing=label_smoothing)  # noqa: E731
    if isinstance(outputs, GoogLeNetOutputs):
        return ce(outputs.logits) + aux_weight * (ce(outputs.aux_logits1) + ce(outputs.aux_logits2))
    return ce(outputs)


def _out(size: int, kernel: int, stride: int = 1, padding: int = 0, ceil: bool = False) -> int:
    """Output side of a convolution or pooling layer, by PyTorch's rule (ATen's
    ``pooling_output_shape``; in ceil mode the last window must start inside the input or its
    left padding). Below 1 PyTorch raises an error."""
    n = (size + 2 * padding - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (n - 1) * stride >= size + padding:
        n -= 1
    return n


def _feature_sizes(model: GoogLeNet, size: int) -> dict[str, int]:
    """Spatial side after each stage for a square input of ``size`` px (below 1: PyTorch refuses)."""
    conv1 = model.conv1.conv
    s = _out(size, conv1.kernel_size[0], conv1.stride[0], conv1.padding[0])
    sizes = {"conv1": s}
    for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):
        pool = getattr(model, name)
        s = _out(s, pool.kernel_size, pool.stride, ceil=True) if s >= 1 else s
        sizes[name] = s
    sizes["inception4a"] = sizes["maxpool3"]  # the auxiliary heads read this map
    return sizes


def _min_input_size(model: GoogLeNet) -> int:
    """Smallest square input every layer accepts (found by walking the stages)."""
    size = 1
    while _feature_sizes(model, size)["maxpool4"] < 1:
        size += 1
    return size
