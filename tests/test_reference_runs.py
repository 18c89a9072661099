"""The committed reference runs (book/results/<run>/): they load safely, reach their goals, and the
accuracy each metrics.json records is what a fresh evaluation of the committed weights measures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import googlenet
from googlenet.config import TrainConfig
from googlenet.data import subset_indices

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
sys.path.insert(0, str(RESULTS.parent))
import booktools  # noqa: E402  (chapter 7 reads the timed runs with the book's own helpers)

# run -> (lowest test accuracy it must reach, most seconds of training it may take)
GOALS = {"fashion_mnist_small": (0.940, 40 * 60), "fashion_mnist_96": (0.920, 60 * 60)}
PROVENANCE = ("command", "machine", "versions", "date", "commit")  # googlenet.provenance


def metrics(run: str) -> dict:
    return json.loads((RESULTS / run / "metrics.json").read_text())


@pytest.mark.parametrize("run", GOALS)
def test_checkpoint_loads_with_weights_only(run):
    path = googlenet.reference_checkpoint(run)
    state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code can run
    assert state["optimizer"] is None and state["rng"] is None, "commit evaluation weights only"
    assert path.stat().st_size < 15e6  # half precision, without the training-only auxiliary heads
    model, meta = googlenet.load_model(path)
    assert not model.training and meta["dataset"] == "fashion_mnist"
    assert meta["model_kwargs"] == {**metrics(run)["model_kwargs"], "aux_logits": False}
    assert model.aux1 is None and next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("run", GOALS)
def test_metrics_record_provenance_and_reach_the_goal(run):
    m = metrics(run)
    assert all(m.get(key) for key in PROVENANCE), [k for k in PROVENANCE if not m.get(k)]
    assert m["command"].startswith("python -m googlenet.train")
    goal, budget = GOALS[run]
    assert m["test_acc"] >= goal
    assert m["train_time_s"] <= budget * 1.01  # the time limit stops within one step of it
    assert m["epochs"][-1]["test_acc"] == m["test_acc"]


def evaluation(run: str) -> dict:
    """The float32 evaluation committed with a run: `python -m googlenet.evaluate` on all test images."""
    return json.loads((RESULTS / run / "evaluation.json").read_text())


@pytest.mark.parametrize("run", GOALS)
def test_the_committed_evaluation_is_the_evaluate_commands_on_the_whole_test_set(run):
    e = evaluation(run)
    assert e["command"] == f"python -m googlenet.evaluate --checkpoint book/results/{run}/model.pt " \
        f"--device cpu --out book/results/{run}/evaluation.png"
    assert e["precision"] == "float32" and e["subset"] is None and e["count"] == 10_000
    assert all(e.get(key) for key in PROVENANCE)
    assert len(e["predictions"]) == len(e["margins"]) == 10_000 and min(e["margins"]) >= 0
    confusion = torch.tensor(e["confusion"])
    assert confusion.sum(1).tolist() == [1000] * 10  # every test image once
    assert confusion.trace().item() / 10_000 == e["accuracy"]
    # training evaluated in bf16 where the CPU had it: the same accuracy to within a few images
    assert abs(e["accuracy"] - metrics(run)["test_acc"]) <= 0.003, (e["accuracy"], metrics(run)["test_acc"])


@pytest.mark.parametrize("run", GOALS)
def test_a_fresh_evaluation_predicts_what_the_committed_one_did(run, fmnist_root, tmp_path):
    """`python -m googlenet.evaluate --subset 500` on this machine: the committed float32 evaluation's
    predictions, image by image, except near-ties that rounding may tip (a margin under 0.01)."""
    checkpoint = str(googlenet.reference_checkpoint(run))
    out = tmp_path / "confusion.png"
    command = [sys.executable, "-m", "googlenet.evaluate", "--checkpoint", checkpoint, "--device", "cpu",
               "--data-root", str(fmnist_root), "--out", str(out), "--subset", "500"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert re.search(r"accuracy \d+\.\d+% on 500 images", printed)
    fresh = json.loads(out.with_suffix(".json").read_text())
    sample = subset_indices(10_000, 500).tolist()  # the images --subset 500 keeps
    committed = evaluation(run)
    differ = [i for i, p in zip(sample, fresh["predictions"], strict=True)
              if p != committed["predictions"][i]]
    assert all(committed["margins"][i] < 0.01 for i in differ), [(i, committed["margins"][i]) for i in differ]


def test_readme_states_the_evaluated_accuracies():
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for run in GOALS:
        weights = run.upper()  # the builder's name for the run: GoogLeNet_Weights.FASHION_MNIST_96
        stated = re.search(rf"`{weights}` is [^%]*?\((\d+\.\d)% test accuracy", readme)
        assert stated, f"README: say `{weights}` is ... (NN.N% test accuracy"
        assert float(stated.group(1)) == round(100 * evaluation(run)["accuracy"], 1)


SPEEDRUN = RESULTS / "speedrun"


def test_the_speedrun_was_tuned_without_the_test_set_and_its_readme_states_each_run():
    readme = (SPEEDRUN / "README.md").read_text()
    tuning = sorted(SPEEDRUN.glob("tuning/*/metrics.json"))
    assert len(tuning) >= 5
    for path in tuning:
        m, name = json.loads(path.read_text()), path.parent.name
        assert all(m.get(key) for key in PROVENANCE) and m["command"].startswith("python -m googlenet.train")
        assert m["config"]["val_split"] == 10_000 and "test_acc" not in m  # chosen on held-out images
        assert m["config"]["recipe"] == "speedrun" and not m["stopped_early"]  # whole schedules
        assert len(m["epochs"]) == m["config"]["epochs"] and m["val_acc"] == m["epochs"][-1]["val_acc"]
        row = re.search(rf"^\| `{name}` \|.*$", readme, re.MULTILINE)
        assert row and f"{m['val_acc']:.2%}" in row.group(), f"README: a row for {name} with its accuracy"
    for path in SPEEDRUN.glob("tuning/*/val_*.json"):  # `python -m googlenet.evaluate --split val`
        evaluated = json.loads(path.read_text())
        assert evaluated["split"] == "val" and f"{evaluated['accuracy']:.2%}" in readme


def test_the_speedruns_timed_runs_were_whole_schedules_on_one_machine_and_the_readme_states_each():
    readme = (SPEEDRUN / "README.md").read_text()
    timed = {p.parent.name: json.loads(p.read_text()) for p in SPEEDRUN.glob("timed/*/metrics.json")}
    assert timed, "no timed run"
    assert len({m["machine"]["cpu"] for m in timed.values()}) == 1  # side by side: one machine
    for name, m in timed.items():
        assert all(m.get(key) for key in PROVENANCE) and m["command"].startswith("python -m googlenet.train")
        c = m["config"]
        assert c["val_split"] == 0 and c["subset"] is None and c["time_limit"] is None  # all test images
        assert not m["stopped_early"] and len(m["epochs"]) == c["epochs"]  # whole schedules, no clock
        # fast_s<k>: its 15-epoch schedule; sr_s<k>: the speedrun recipe as it stands; sr<n>_s<k>: an
        # earlier speedrun of n epochs
        named = re.fullmatch(r"(fast|sr)(\d*)_s(\d+)", name)
        assert named and named[1] == {"fast": "fast", "speedrun": "sr"}[c["recipe"]], name
        epochs = 15 if named[1] == "fast" else int(named[2] or TrainConfig(recipe="speedrun").epochs)
        assert (c["epochs"], c["seed"]) == (epochs, int(named[3])), name
        assert all(e["test_acc"] for e in m["epochs"]) and m["test_acc"] == m["epochs"][-1]["test_acc"]
        row = re.search(rf"^\| `{name}` \|.*$", readme, re.MULTILINE)
        assert row and f"{m['test_acc']:.2%}" in row.group(), f"README: a row for {name} with its accuracy"
        seconds = 0.0
        for e in m["epochs"]:  # the README's time to 94%: training seconds to the first epoch at 94%
            seconds += e["train_time_s"]
            if e["test_acc"] >= 0.94:
                assert f"| {seconds:.0f} s |" in row.group(), (name, seconds)
                break
        else:
            assert "| never |" in row.group(), name
            seconds = None
        assert booktools.seconds_to_accuracy(m, 0.94) == seconds, name  # what chapter 7 prints
