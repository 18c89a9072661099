"""The committed ablation runs, chapters 5 and 7: every run records where it came from and the setting
it shares with the others. book/results/ablation/<config>_seed<k>/: eight minutes of training each,
at least two seeds per configuration; book/results/ablation_full/<config>_seed<k>/: whole schedules of
the speedrun recipe, every epoch done, at least three seeds per configuration."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
ABLATION, FULL = RESULTS / "ablation", RESULTS / "ablation_full"
PROVENANCE = ("command", "machine", "versions", "date", "commit")
CONFIGS = {  # configuration -> its flags in the training command
    "torchvision_aux": "--variant torchvision --aux-logits",
    "torchvision_noaux": "--variant torchvision --no-aux-logits",
    "paper_paper_recipe": "--variant paper --recipe paper",
    "paper_fast_recipe": "--variant paper",
}
TIME_LIMIT = 480
RUNS = sorted(ABLATION.glob("*/metrics.json"))


def run_config(path: Path) -> tuple[str, int]:
    """(configuration, seed) from a run folder's name, <config>_seed<k>."""
    config, seed = re.fullmatch(r"(.+)_seed(\d+)", path.parent.name).groups()
    return config, int(seed)


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.parent.name)
def test_run_records_provenance_and_the_common_budget(path):
    m = json.loads(path.read_text())
    assert all(m.get(key) for key in PROVENANCE), [k for k in PROVENANCE if not m.get(k)]
    config, seed = run_config(path)
    assert m["command"].startswith("python -m googlenet.train")
    assert f"--time-limit {TIME_LIMIT} " in m["command"] and f"--seed {seed} " in m["command"]
    assert m["command"].endswith(f"{CONFIGS[config]} --out-dir runs/ablation/{path.parent.name}")
    assert m["config"]["time_limit"] == TIME_LIMIT and m["config"]["seed"] == seed
    assert abs(m["train_time_s"] - TIME_LIMIT) <= 0.01 * TIME_LIMIT  # stopped by the clock
    assert m["epochs"][-1]["test_acc"] == m["test_acc"]


def test_every_configuration_has_two_seeds():
    seeds = Counter(run_config(path)[0] for path in RUNS)
    assert set(seeds) == set(CONFIGS), seeds
    assert min(seeds.values()) >= 2, seeds


# The whole-schedule runs: the speedrun recipe for its full length; the paper's network at the peak
# learning rate it trains at (the README says how it was chosen on held-out images).
FULL_EPOCHS = 4
FULL_COMMON = f"--dataset fashion_mnist --stem small --recipe speedrun --epochs {FULL_EPOCHS}"
FULL_CONFIGS = {
    "torchvision_aux": "--variant torchvision --aux-logits",
    "torchvision_noaux": "--variant torchvision --no-aux-logits",
}
FULL_RUNS = sorted(FULL.glob("*_seed*/metrics.json"))


@pytest.mark.parametrize("path", FULL_RUNS, ids=lambda p: p.parent.name)
def test_full_run_records_provenance_and_its_whole_schedule(path):
    m = json.loads(path.read_text())
    assert all(m.get(key) for key in PROVENANCE), [k for k in PROVENANCE if not m.get(k)]
    config, seed = run_config(path)
    assert m["command"] == (f"python -m googlenet.train {FULL_COMMON} {FULL_CONFIGS[config]} --amp bf16"
                            f" --channels-last --seed {seed} --no-progress"
                            f" --out-dir runs/whole/{path.parent.name}")
    c = m["config"]
    assert c["seed"] == seed and c["time_limit"] is None and c["val_split"] == 0
    assert [e["epoch"] for e in m["epochs"]] == list(range(1, FULL_EPOCHS + 1))
    assert all(e["complete"] for e in m["epochs"]) and not m["stopped_early"]
    assert m["epochs"][-1]["test_acc"] == m["test_acc"]


def test_every_full_configuration_has_three_seeds():
    seeds = Counter(run_config(path)[0] for path in FULL_RUNS)
    assert set(seeds) == set(FULL_CONFIGS), seeds
    assert min(seeds.values()) >= 3, seeds
