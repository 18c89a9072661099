"""Measure Table 1 from a live model: output shape, parameters and multiply-adds per row."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .architecture import PAPER_TABLE1
from .hooks import recording
from .model import GoogLeNet

# Table 1 lists conv2 and conv3 of the stem as one "convolution 3x3/1, depth 2" row; local
# response normalisation (paper variant) is not listed, so it is measured with the row it follows.
_ROW_MODULES = {"maxpool1": ("maxpool1", "lrn1"), "conv2": ("conv2", "conv3", "lrn2")}


class MeasuredRow(NamedTuple):
    name: str
    output: tuple[int, ...]  # (height, width, channels), as the paper writes it
    params: int
    macs: int  # multiply-adds of convolutions and linear layers (what the paper calls ops)


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() // out.shape[0] * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


@torch.no_grad()
def table1(model: GoogLeNet, input_size: int = 224) -> list[MeasuredRow]:
    """One :class:`MeasuredRow` per row of :data:`PAPER_TABLE1`, for one image of ``input_size`` px.

    Auxiliary heads are not part of Table 1 and are not counted.
    """
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = {row.name: _ROW_MODULES.get(row.name, (row.name,))[-1] for row in PAPER_TABLE1}
    param = next(model.parameters())
    with recording(model, {*layers, *last.values()}) as outputs:
        model(torch.zeros(1, model.in_channels, input_size, input_size, dtype=param.dtype,
                          device=param.device))
    macs = {model.get_submodule(n): _macs(model.get_submodule(n), outputs[n]) for n in layers if n in outputs}
    rows = []
    for row in PAPER_TABLE1:
        modules = [getattr(model, n) for n in _ROW_MODULES.get(row.name, (row.name,))]
        params = sum(p.numel() for m in modules for p in m.parameters())
        row_macs = sum(macs.get(sub, 0) for m in modules for sub in m.modules())
        rows.append(MeasuredRow(row.name, _hwc(outputs[last[row.name]]), params, row_macs))
    return rows


def _hwc(out: torch.Tensor) -> tuple[int, ...]:
    return (*out.shape[2:], out.shape[1]) if out.dim() == 4 else (1, 1, out.shape[1])
