"""The committed ablation runs (book/results/ablation/<config>_seed<k>/, chapters 5 and 7): every run
records where it came from, all had the same time budget, and each configuration has at least two seeds."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ABLATION = Path(__file__).resolve().parents[1] / "book" / "results" / "ablation"
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
