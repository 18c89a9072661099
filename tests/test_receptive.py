"""Receptive fields: the layer walk against hand-computed values and against backpropagation."""

from __future__ import annotations

import itertools

import pytest
from torch import nn

from googlenet import GoogLeNet, Inception
from googlenet.receptive import (
    ReceptiveField,
    measured_receptive_field,
    measured_start,
    receptive_field,
    receptive_fields,
)


def _main_path_to(model: GoogLeNet, last: str) -> nn.Sequential:
    names = [n for n, _ in model.named_children()]
    keep = itertools.takewhile(lambda nc: nc[0] != names[names.index(last) + 1], model.named_children())
    return nn.Sequential(*(c for _, c in keep))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([nn.Conv2d(1, 1, 3)], ReceptiveField(3, 1, 1.0)),
        ([nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3)], ReceptiveField(5, 1, 1.0)),
        ([nn.Conv2d(1, 1, 3, stride=2), nn.ReLU(), nn.Conv2d(1, 1, 3)], ReceptiveField(7, 2, 3.0)),
        ([nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, dilation=2)], ReceptiveField(10, 2, 4.5)),
        ([nn.Conv2d(1, 1, (5, 5), stride=(2, 2)), nn.AvgPool2d(3, stride=1)], ReceptiveField(9, 2, 4.0)),
        ([nn.Conv2d(1, 1, 7, stride=2, padding=3), nn.MaxPool2d(3, 2, ceil_mode=True)],
         ReceptiveField(11, 4, 2.0)),
        ([nn.Conv2d(1, 1, 5, padding="same"), nn.Conv2d(1, 1, 4, padding="same")],
         ReceptiveField(8, 1, 0.5)),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the last case, on purpose
def test_small_stacks_match_hand_values_and_backprop(layers, expected):
    seq = nn.Sequential(*layers)
    assert receptive_field(seq) == expected
    assert measured_receptive_field(seq, in_channels=1, input_size=31) == expected.size
    assert measured_start(seq, in_channels=1, input_size=31) == expected.start


def test_inception_takes_its_widest_branch():
    paper = Inception(8, 2, 2, 2, 2, 2, 2, batch_norm=False, kernel5=5)
    port = Inception(8, 2, 2, 2, 2, 2, 2, batch_norm=True, kernel5=3)
    assert receptive_field(paper, ReceptiveField(3, 2, 1.0)) == ReceptiveField(11, 2, 1.0)
    assert receptive_field(port, ReceptiveField(3, 2, 1.0)) == ReceptiveField(7, 2, 1.0)


def test_non_square_window_is_rejected():
    with pytest.raises(ValueError, match="square"):
        receptive_field(nn.Conv2d(1, 1, (3, 5)))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("paper", {"conv1": 7, "maxpool2": 27, "inception3a": 59, "inception4e": 427, "inception5b": 715}),
        ("torchvision", {"conv1": 7, "maxpool2": 27, "inception3a": 43, "inception4e": 235,
                         "inception5b": 379}),
    ],
)
def test_googlenet_main_path(variant, expected):
    fields = receptive_fields(GoogLeNet(variant=variant))
    assert list(fields)[0] == "conv1" and list(fields)[-1] == "inception5b"
    assert not any(name.startswith("aux") for name in fields)
    assert {name: fields[name].size for name in expected} == expected
    assert fields["inception5b"].jump == 32
    # The max pools have no padding: each moves unit 0's centre right by one of its input's jumps.
    assert [fields[n].start for n in ("conv1", "maxpool1", "maxpool2", "maxpool3")] == [0, 2, 6, 14]
    assert fields["inception5b"].start == (30 if variant == "paper" else 22)  # torchvision: a 2x2 pool


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_walk_agrees_with_backpropagation(variant):
    model = GoogLeNet(variant=variant, aux_logits=False)
    expected = receptive_fields(model)["inception3b"].size
    assert measured_receptive_field(_main_path_to(model, "inception3b"), 3, 160) == expected


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_unit_zeros_centre_agrees_with_backpropagation(variant):
    model = GoogLeNet(variant=variant, aux_logits=False)
    expected = receptive_fields(model)["maxpool3"].start
    assert measured_start(_main_path_to(model, "maxpool3"), 3, 160) == expected == 14


def test_measurement_is_clipped_by_a_small_image():
    model = GoogLeNet(aux_logits=False)
    assert measured_receptive_field(_main_path_to(model, "inception3b"), 3, 64) < 91
