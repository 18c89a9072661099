"""Receptive fields: how many input pixels can influence one output position, layer by layer.

:func:`receptive_fields` walks a model's layers and adds up kernel sizes and strides;
:func:`measured_receptive_field` finds the same number by backpropagation, as a check.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from .model import GoogLeNet, Inception

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class ReceptiveField(NamedTuple):
    """Side of the square input patch one output position sees, and the input-pixel step between outputs."""

    size: int
    jump: int  # product of all strides so far


PIXEL = ReceptiveField(1, 1)
"""The receptive field of the input image itself: one pixel."""


def _side(value: int | tuple[int, ...]) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"only square windows are supported, got {value}")
        return value[0]
    return value


def receptive_field(module: nn.Module, rf: ReceptiveField = PIXEL) -> ReceptiveField:
    """The receptive field after ``module``, given the one of its input.

    Convolutions and pools grow it by ``(kernel - 1) * dilation * jump``; an :class:`Inception`
    module takes the largest of its parallel branches; any other container is walked in
    registration order (true of ``nn.Sequential`` and :class:`ConvBlock`); other layers
    (ReLU, batch norm, LRN, dropout) leave it unchanged.
    """
    if isinstance(module, _WINDOWED):
        dilation = _side(module.dilation) if isinstance(module, nn.Conv2d) else 1
        grow = (_side(module.kernel_size) - 1) * dilation * rf.jump
        return ReceptiveField(rf.size + grow, rf.jump * _side(module.stride))
    if isinstance(module, Inception):
        branches = [receptive_field(b, rf) for b in (module.branch1, module.branch2, module.branch3,
                                                     module.branch4)]
        if len({b.jump for b in branches}) != 1:
            raise ValueError("Inception branches with different strides cannot be concatenated")
        return max(branches)
    for child in module.children():
        rf = receptive_field(child, rf)
    return rf


def receptive_fields(model: GoogLeNet) -> dict[str, ReceptiveField]:
    """Receptive field after each top-level layer of the main path, from conv1 to inception5b.

    Stops at the global average pool (whose receptive field is the whole image) and skips the
    auxiliary heads, which branch off the main path.
    """
    rf, fields = PIXEL, {}
    for name, child in model.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d):
            break
        if child is None or name.startswith("aux"):
            continue
        rf = fields[name] = receptive_field(child, rf)
    return fields


@torch.no_grad()
def _positive_copy(module: nn.Module) -> nn.Module:
    """A copy in which no two paths can cancel: positive weights, average pools, no LRN."""
    module = copy.deepcopy(module).eval()
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode))
            elif isinstance(child, nn.LocalResponseNorm):
                setattr(parent, name, nn.Identity())
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.fill_(1.0 / m.weight[0].numel())
            if m.bias is not None:
                m.bias.zero_()
    return module


def measured_receptive_field(module: nn.Module, in_channels: int, input_size: int) -> int:
    """Extent, in input rows, of the pixels that reach the centre output, found by backpropagation.

    Runs on a copy where max pools become average pools of the same geometry (a max sends its
    gradient to one input only), LRN is dropped and every weight is positive, so every input
    pixel inside the receptive field gets a non-zero gradient. ``input_size`` must exceed the
    receptive field, or the count is clipped by the image border.
    """
    probe = _positive_copy(module)
    x = torch.ones(1, in_channels, input_size, input_size, dtype=torch.float64, requires_grad=True)
    out = probe.double()(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1)
