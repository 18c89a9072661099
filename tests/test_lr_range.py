"""The learning-rate range test: exponential rates, one step each, stopping once the loss blows up."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from googlenet.engine import lr_range_test


def _problem(spread: float = 0.5, seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A linear classifier and four batches of three classes around random centres, ``spread`` apart."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 8, generator=g) * 3
    y = torch.randint(0, 3, (64,), generator=g)
    x = centres[y] + torch.randn(64, 8, generator=g) * spread
    torch.manual_seed(seed)
    return nn.Linear(8, 3), list(zip(x.split(16), y.split(16), strict=True))


def test_rates_grow_exponentially_and_the_loss_first_falls():
    model, batches = _problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    record = lr_range_test(model, batches, optimizer, lr_min=1e-3, lr_max=1.0, steps=40)
    assert len(record["lr"]) == len(record["loss"]) == len(record["smoothed"]) == 40  # batches reused
    assert record["lr"][0] == pytest.approx(1e-3) and record["lr"][-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(record["lr"], record["lr"][1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))
    assert record["smoothed"][-1] < 0.5 * record["smoothed"][0]


def test_it_stops_once_the_loss_blows_up():
    model, batches = _problem(spread=10.0)  # overlapping classes: the loss cannot fall to zero
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    record = lr_range_test(model, batches, optimizer, lr_min=1e-2, lr_max=1e6, steps=100)
    assert len(record["lr"]) < 100
    last = record["smoothed"][-1]
    assert not math.isfinite(last) or last > 4 * min(record["smoothed"])


def test_an_exhausted_iterator_is_refused():
    model, batches = _problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="ran out"):
        lr_range_test(model, iter(batches), optimizer, steps=10)
