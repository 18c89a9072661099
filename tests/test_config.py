"""googlenet.config: recipes apply through the constructor, every field is checked, resumes compare."""

from __future__ import annotations

import pytest

from googlenet import TrainConfig
from googlenet.config import RECIPES, SMALL_STEM_BELOW, changed_fields, stem_for
from googlenet.train import build_parser


def test_the_paper_recipe_applies_through_the_constructor():
    paper = TrainConfig(recipe="paper")
    assert (paper.schedule, paper.average, paper.lr, paper.nesterov) == ("step", "polyak", 0.01, False)
    assert all(getattr(paper, k) == v for k, v in RECIPES["paper"].items())
    assert all(getattr(TrainConfig(), k) == v for k, v in RECIPES["fast"].items())


def test_each_recipe_trains_its_own_network_unless_told_otherwise():
    assert (TrainConfig().variant, TrainConfig(recipe="paper").variant) == ("torchvision", "paper")
    assert TrainConfig(recipe="paper", variant="torchvision").variant == "torchvision"


def test_explicit_values_override_the_recipe():
    config = TrainConfig(recipe="paper", lr=0.5, average="none")
    assert config.lr == 0.5 and config.average == "none" and config.schedule == "step"


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be a number >= 1, got 0"),
    ("lr", 0.0, "lr must be a number > 0"),
    ("epochs", 0, "epochs must be a number >= 1"),
    ("label_smoothing", 1.0, r"label_smoothing must be a number in \[0, 1\)"),
    ("time_limit", -5.0, "time_limit must be a number > 0"),
    ("ema_decay", 1.0, r"ema_decay must be a number in \(0, 1\)"),
    ("workers", -1, "workers must be a number >= 0"),
    ("batch_size", True, "batch_size must be a number"),
    ("schedule", "triangle", "schedule must be one of"),
    ("val_split", -1, "val_split must be a number >= 0"),
    ("progressive_sizes", [20, 0], "progressive_sizes must be a number >= 1, got 0"),
    ("recipe", "modern", "recipe must be one of"),
    ("dataset", "mnist", "unknown dataset 'mnist'"),
])
def test_every_field_is_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_the_speedrun_recipe_resolves_from_python_and_the_command_line():
    run = TrainConfig(recipe="speedrun")
    assert all(getattr(run, k) == v for k, v in RECIPES["speedrun"].items())
    assert (run.schedule, run.tta, run.variant, run.batch_size) == ("linear", True, "torchvision", 256)
    assert TrainConfig().batch_size == 128 and not TrainConfig().tta
    run.progressive_sizes.append(99)  # each config has its own copy of the recipe's list
    assert RECIPES["speedrun"]["progressive_sizes"] == []
    assert TrainConfig(recipe="speedrun").progressive_sizes == []
    flags = ["--recipe", "speedrun", "--progressive-sizes", "24", "28", "--no-tta", "--val-split", "5000"]
    config = TrainConfig(**vars(build_parser().parse_args(flags)))
    assert (config.progressive_sizes, config.tta, config.val_split) == ([24, 28], False, 5000)
    assert config.epochs == RECIPES["speedrun"]["epochs"] and config.schedule == "linear"


def test_one_small_stem_threshold():
    assert stem_for(SMALL_STEM_BELOW - 1) == "small" and stem_for(SMALL_STEM_BELOW) == "imagenet"
    assert stem_for(28) == "small" and stem_for(224) == "imagenet"


def test_changed_fields_names_what_a_resume_would_change():
    saved = vars(TrainConfig(out_dir="a"))
    assert changed_fields(saved, TrainConfig(out_dir="b", progress=False, workers=0)) == []
    assert changed_fields(saved, TrainConfig(lr=0.2, seed=1)) == ["lr: 0.1 -> 0.2", "seed: 0 -> 1"]
    older = {k: v for k, v in saved.items() if k not in ("tta", "val_split")}  # saved before they existed
    assert changed_fields(older, TrainConfig(out_dir="a")) == []
    assert changed_fields(older, TrainConfig(out_dir="a", tta=True)) == ["tta: False -> True"]
