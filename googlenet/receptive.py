"""Receptive fields: how many input pixels can influence one output position, layer by layer.

:func:`receptive_fields` walks a model's layers and adds up kernel sizes, strides and paddings;
:func:`measured_receptive_field` and :func:`measured_start` find the same numbers by
backpropagation, as a check.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from .model import GoogLeNet, Inception

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class ReceptiveField(NamedTuple):
    """Side of the input patch one output sees, the step between outputs, where output 0 looks."""

    size: int
    jump: int  # product of all strides so far
    start: float = 0.0  # input-pixel index (0 = the first pixel) of the centre of output 0's field


PIXEL = ReceptiveField(1, 1, 0.0)
"""The receptive field of the input image itself: one pixel."""


def _side(value: int | tuple[int, ...]) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"only square windows are supported, got {value}")
        return value[0]
    return value


def _padding(module: nn.Module, span: int) -> float:
    """Zero padding before the first row: a number, or what ``"same"``/``"valid"`` pad."""
    if module.padding == "same":
        return span // 2  # PyTorch puts the odd row of padding, if any, after the last row
    return 0 if module.padding == "valid" else _side(module.padding)


def receptive_field(module: nn.Module, rf: ReceptiveField = PIXEL) -> ReceptiveField:
    """The receptive field after ``module``, given the one of its input.

    Convolutions and pools grow it by ``(kernel - 1) * dilation * jump`` and move the centre of
    output 0 by ``((kernel - 1) * dilation / 2 - padding) * jump`` (a pool with no padding moves
    it right); an :class:`Inception` module takes the largest of its parallel branches; any other
    container is walked in registration order (true of ``nn.Sequential`` and :class:`ConvBlock`);
    other layers (ReLU, batch norm, LRN, dropout) leave it unchanged.
    """
    if isinstance(module, _WINDOWED):
        dilation = _side(module.dilation) if isinstance(module, nn.Conv2d) else 1
        span = (_side(module.kernel_size) - 1) * dilation  # the window's extent, less one
        start = rf.start + (span / 2 - _padding(module, span)) * rf.jump
        return ReceptiveField(rf.size + span * rf.jump, rf.jump * _side(module.stride), start)
    if isinstance(module, Inception):
        branches = [receptive_field(b, rf) for b in (module.branch1, module.branch2, module.branch3,
                                                     module.branch4)]
        if len({(b.jump, b.start) for b in branches}) != 1:
            raise ValueError("Inception branches with different grids cannot be concatenated")
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


def _reached_rows(module: nn.Module, in_channels: int, input_size: int,
                  offset: int = 0) -> tuple[int, int, int]:
    """First and last input row that reach output row ``centre + offset``; the output's rows."""
    probe = _positive_copy(module)
    x = torch.ones(1, in_channels, input_size, input_size, dtype=torch.float64, requires_grad=True)
    out = probe.double()(x)
    out[0, :, out.shape[2] // 2 + offset, out.shape[3] // 2].sum().backward()
    rows = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]), out.shape[2]


def measured_receptive_field(module: nn.Module, in_channels: int, input_size: int) -> int:
    """Extent, in input rows, of the pixels that reach the centre output, found by backpropagation.

    Runs on a copy where max pools become average pools of the same geometry (a max sends its
    gradient to one input only), LRN is dropped and every weight is positive, so every input
    pixel inside the receptive field gets a non-zero gradient. ``input_size`` must exceed the
    receptive field, or the count is clipped by the image border.
    """
    first, last, _ = _reached_rows(module, in_channels, input_size)
    return last - first + 1


def measured_start(module: nn.Module, in_channels: int, input_size: int) -> float:
    """Input row on which output row 0's field is centred, found by backpropagation.

    Measures the centres of the fields of the centre output and of the one above it, as
    :func:`measured_receptive_field` measures their extent, and steps back from the centre
    output by their distance (the jump). ``input_size`` must exceed the receptive field by
    more than a jump, or the fields are clipped by the image border.
    """
    first, last, out_size = _reached_rows(module, in_channels, input_size)
    above_first, above_last, _ = _reached_rows(module, in_channels, input_size, offset=-1)
    centre, jump = (first + last) / 2, (first + last - above_first - above_last) / 2
    return centre - (out_size // 2) * jump
