"""googlenet.engine and googlenet.checkpoint: learning, schedules, averages, exact resume, refused
resumes, non-finite losses, DDP, checkpoint errors."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import types
from dataclasses import replace
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

import googlenet.engine as engine
from googlenet import GoogLeNet, TrainConfig, reference_checkpoint
from googlenet.checkpoint import (
    CheckpointError,
    export_for_evaluation,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from googlenet.data import Data, TensorImages, hold_out
from googlenet.device import seed_for
from googlenet.engine import NonFiniteLossError, lr_at, resize, size_at, train, train_step, weight_average
from googlenet.errors import ConfigError
from googlenet.evaluate import main as evaluate_command
from googlenet.files import write_atomically
from googlenet.metrics import evaluate
from googlenet.plots import plot_confusion_matrix, plot_history

pytestmark = pytest.mark.usefixtures("one_thread")

def tiny_config(tmp_path: Path, data_root: Path, **overrides) -> TrainConfig:
    """A run that takes a second or two: a few dozen images, small batches, no progress bars."""
    base = {"data_root": str(data_root), "subset": 48, "batch_size": 16, "epochs": 2, "workers": 0,
            "out_dir": str(tmp_path / "run"), "progress": False, "log_every": 1}
    return TrainConfig(**{**base, **overrides})


def test_a_small_googlenet_overfits_one_batch():
    torch.manual_seed(0)
    model = GoogLeNet(4, variant="torchvision", stem="small", in_channels=1, dropout=0.0, dropout_aux=0.0)
    x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [train_step(model.train(), x, y, optimizer)[0].item() for _ in range(25)]
    assert losses[-1] < 0.1 * losses[0], losses


def test_schedules():
    c = TrainConfig(lr=1.0, warmup=0.2)
    assert lr_at(c, 0.0, 0) == pytest.approx(1 / 25) and lr_at(c, 0.2, 0) == pytest.approx(1.0)
    assert lr_at(c, 0.6, 0) == pytest.approx(0.5) and lr_at(c, 1.0, 9) == pytest.approx(0.0)
    paper = TrainConfig(recipe="paper", lr=1.0)
    assert [lr_at(paper, 0.5, e) for e in (0, 7, 8, 16)] == pytest.approx([1, 1, 0.96, 0.96**2])
    assert paper.average == "polyak" and paper.aux_weight == 0.3 and paper.momentum == 0.9
    linear = TrainConfig(recipe="speedrun", lr=1.0, warmup=0.2)  # warm up as onecycle, then a straight line
    lrs = [lr_at(linear, p / 10, 0) for p in range(11)]
    assert lrs[0] == pytest.approx(1 / 25) and lrs[2] == pytest.approx(1.0) and lrs[10] == pytest.approx(0.0)
    assert [a - b for a, b in itertools.pairwise(lrs[2:])] == pytest.approx([1 / 8] * 8)


def test_progressive_sizes_grow_in_equal_shares_of_the_training():
    config = TrainConfig(progressive_sizes=[20, 24, 28])
    progress = (0.0, 0.33, 0.34, 0.66, 0.67, 0.999, 1.0)
    assert [size_at(config, p) for p in progress] == [20, 20, 24, 24, 28, 28, 28]
    assert size_at(TrainConfig(), 0.5) is None
    x = torch.rand(2, 1, 28, 28)
    assert resize(x, None) is x and resize(x, 28) is x and resize(x, 20).shape == (2, 1, 20, 20)
    assert torch.allclose(resize(torch.ones(1, 1, 28, 28), 13), torch.ones(1, 1, 13, 13))


def test_a_run_trains_at_each_progressive_size_in_turn(fmnist_root, tmp_path, monkeypatch):
    sides = []

    def recording_step(model, x, *args, **kwargs):
        sides.append(x.shape[-1])
        return real_step(model, x, *args, **kwargs)

    real_step = engine.train_step
    monkeypatch.setattr(engine, "train_step", recording_step)
    train(tiny_config(tmp_path, fmnist_root, progressive_sizes=[16, 28], epochs=1, batch_size=8))  # 6 steps
    assert sides == [16, 16, 16, 28, 28, 28]


def test_the_validation_split_is_held_out_of_training_and_the_same_every_time():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 4, 4).contiguous()
    labels = torch.arange(100)  # each image's label is its index
    test = TensorImages(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64))
    data = Data("fashion_mnist", list("ab"), (0.5,), (0.5,), 4, 4, 1, TensorImages(images, labels), test)
    held = hold_out(data, 20)
    val, rest = held.test.labels, held.train.labels
    assert len(val) == 20 and len(rest) == 80 and not set(val.tolist()) & set(rest.tolist())
    assert sorted(val.tolist() + rest.tolist()) == list(range(100))
    assert torch.equal(held.test.images[:, 0, 0, 0].long(), val)  # images travel with their labels
    assert torch.equal(hold_out(data, 20).test.labels, val) and val.tolist() != list(range(20))
    with pytest.raises(ValueError, match="must leave images to train on"):
        hold_out(data, 100)


def test_a_run_with_a_validation_split_never_sees_the_test_set(fmnist_root, tmp_path):
    history = train(tiny_config(tmp_path, fmnist_root, val_split=16, epochs=1))
    epoch = history["epochs"][0]
    assert epoch["images"] == 32 and "val_acc" in epoch and "test_acc" not in epoch  # 48 - 16 trained on
    assert history["val_acc"] == epoch["val_acc"] and "test_acc" not in history
    # The evaluate command measures the same held-out images again; a run without them gets one line.
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    again = evaluate_command(["--checkpoint", checkpoint, "--split", "val", "--device", "cpu"])
    assert again["loss"] == pytest.approx(epoch["val_loss"], rel=1e-6, abs=1e-7)
    assert again["accuracy"] == epoch["val_acc"]
    train(tiny_config(tmp_path, fmnist_root, epochs=1, out_dir=str(tmp_path / "plain")))
    with pytest.raises(ConfigError, match="trained without --val-split"):
        evaluate_command(["--checkpoint", str(tmp_path / "plain" / "checkpoint.pt"), "--split", "val"])


def test_flip_test_time_augmentation_averages_each_image_and_its_mirror_image():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))  # not mirror-symmetric
    x, y = torch.randn(5, 1, 2, 3), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        both = (model(x) + model(x.flip(3))) / 2
    plain, flipped = (evaluate(model, [(x, y)], 3, flip=f, per_image=True) for f in (False, True))
    assert flipped["loss"] == pytest.approx(torch.nn.functional.cross_entropy(both, y).item())
    assert flipped["predictions"] == both.argmax(1).tolist() and flipped["loss"] != plain["loss"]


def test_weight_averages_are_pytorchs_averaged_model_with_batch_norm_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    polyak, ema = weight_average(net, "polyak", 0.9), weight_average(net, "ema", 0.25)
    assert weight_average(net, "none", 0.9) is None
    expected_ema = None
    values = (1.0, 2.0, 6.0, 10.0)
    for n, value in enumerate(values):
        torch.nn.init.constant_(net[0].weight, value)
        net[1].running_mean.fill_(value)
        polyak.update_parameters(net)
        ema.update_parameters(net)
        # by hand: the first update copies, then avg = d * avg + (1 - d) * new, where the decay d
        # warms up as (1 + k) / (10 + k) after k updates until it reaches 0.25 (from k = 2)
        d = min(0.25, (1 + n) / (10 + n)) if n else None
        expected_ema = value if expected_ema is None else d * expected_ema + (1 - d) * value
    assert [min(0.25, (1 + k) / (10 + k)) for k in (1, 2, 3)] == [0.18181818181818182, 0.25, 0.25]
    assert torch.allclose(polyak.module[0].weight, torch.tensor(4.75))  # (1 + 2 + 6 + 10) / 4
    assert torch.allclose(polyak.module[1].running_mean, torch.tensor(4.75))  # buffers are averaged too
    assert torch.allclose(ema.module[0].weight, torch.tensor(expected_ema))
    assert torch.allclose(ema.module[1].running_mean, torch.tensor(expected_ema))


def test_a_short_runs_ema_is_not_stuck_at_the_first_weights():
    """With a fixed decay of 0.999, 200 updates leave 82% of the starting weights in the average."""
    net = torch.nn.Linear(1, 1, bias=False)
    ema = weight_average(net, "ema", 0.999)
    torch.nn.init.zeros_(net.weight)
    ema.update_parameters(net)  # the first update copies: the average starts at 0
    torch.nn.init.ones_(net.weight)
    for _ in range(200):
        ema.update_parameters(net)
    assert ema.module.weight.item() > 0.95  # the warm-up forgets the start; 0.999 alone: 1 - 0.999**200


@pytest.mark.parametrize("dataset", ["fashion_mnist", "folder"])
def test_resume_after_a_crash_ends_with_the_same_weights(dataset, fmnist_root, image_folder, tmp_path,
                                                          monkeypatch):
    root = fmnist_root if dataset == "fashion_mnist" else image_folder
    extra = {"image_size": 32} if dataset == "folder" else {}
    straight = tiny_config(tmp_path / "a", root, dataset=dataset, average="ema", **extra)
    history = train(straight)

    crashing = replace(straight, out_dir=str(tmp_path / "b"))
    real_save = engine.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # the machine goes down right after epoch 1's checkpoint

    monkeypatch.setattr(engine, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(crashing)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert read_checkpoint(crashing.run_dir / "checkpoint.pt")["epoch"] == 1
    resumed = train(replace(crashing, resume=True))

    a, b = (read_checkpoint(c.run_dir / "checkpoint.pt") for c in (straight, crashing))
    for key in ("model", "optimizer"):
        assert _equal(a[key], b[key]), key
    assert _equal(a["average"], b["average"])
    assert [e["test_acc"] for e in history["epochs"]] == [e["test_acc"] for e in resumed["epochs"]]


def _equal(x, y) -> bool:
    """Exact equality of nested dicts/lists of tensors and numbers."""
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, torch.Tensor):
        return torch.equal(x, y)
    return x == y


def test_history_checkpoint_and_load_model(fmnist_root, tmp_path):
    config = tiny_config(tmp_path, fmnist_root, epochs=1, amp="bf16", channels_last=True, time_limit=60)
    history = train(config)
    saved = json.loads((config.run_dir / "metrics.json").read_text())
    assert saved["epochs"] == history["epochs"] and saved["amp"] == "bfloat16"
    assert saved["versions"]["torch"] == torch.__version__ and saved["machine"]["threads"] >= 1
    assert saved["date"].endswith("+00:00") and saved["command"] is None  # not started from the CLI
    assert saved["commit"] is None or len(saved["commit"]) == 40
    assert saved["machine"]["cores"] >= 1 and isinstance(saved["machine"]["native_bf16"], bool)
    assert history["steps"][0]["step"] == 1 and 0 < history["train_time_s"] < 60
    model, meta = load_model(config.run_dir / "checkpoint.pt")
    assert not model.training and meta["dataset"] == "fashion_mnist" and len(meta["classes"]) == 10
    assert meta["model_kwargs"]["stem"] == "small" and meta["mean"] == [0.286] and meta["image_size"] == 28
    assert not list(config.run_dir.glob(".*.tmp"))  # atomic writes leave no temporary file behind
    loss_ax, acc_ax = plot_history(config.run_dir)  # the run folder, its metrics.json or the dict
    assert len(loss_ax.lines) == 2 and acc_ax.lines[1].get_ydata()[0] == 100 * history["test_acc"]
    ax = plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"])
    assert ax.images[0].get_array()[0, 0] == 75
    plt.close("all")


def test_time_limit_stops_cleanly_and_the_schedule_still_anneals(fmnist_root, tmp_path, monkeypatch):
    """On a clock that moves a tenth of a second at each reading, whatever the machine's speed."""
    readings = itertools.count(0.0, 0.1)
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    config = tiny_config(tmp_path, fmnist_root, subset=2000, epochs=5, time_limit=2.0)
    history = train(config)
    assert history["stopped_early"] and len(history["epochs"]) == 1 and not history["epochs"][0]["complete"]
    assert history["train_time_s"] >= 2.0 and history["epochs"][0]["images"] < 2000
    lrs = [s["lr"] for s in history["steps"]]
    peak = lrs.index(max(lrs))
    assert lrs[peak:] == sorted(lrs[peak:], reverse=True) and lrs[-1] < 0.3 * config.lr  # on the clock


def test_checkpoint_errors_are_clear_and_never_half_load(fmnist_root, tmp_path):
    config = tiny_config(tmp_path, fmnist_root, epochs=1, subset=16)
    train(config)
    good = config.run_dir / "checkpoint.pt"
    blob = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(blob[: len(blob) // 2])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(4096))
    for path in (truncated, corrupt):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_model(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a googlenet checkpoint"):
        load_model(tmp_path / "other.pt")

    state = read_checkpoint(good)
    state["model_kwargs"] = {**state["model_kwargs"], "num_classes": 7}
    save_checkpoint(tmp_path / "mismatch.pt", state, state["model"])
    with pytest.raises(CheckpointError, match=r"shape mismatch: aux1.fc2.weight \(10, 1024\) saved, \(7"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="this run asks for"):
        train(replace(config, variant="paper", resume=True))


def test_resume_refuses_settings_that_change_the_run(fmnist_root, tmp_path):
    config = tiny_config(tmp_path, fmnist_root, epochs=1, subset=16)
    train(config)
    with pytest.raises(ValueError, match=r"cannot resume .*epochs: 1 -> 3; lr: 0.1 -> 0.05\)"):
        train(replace(config, resume=True, lr=0.05, epochs=3))
    # where results go and how chatty the run is may change
    history = train(replace(config, resume=True, log_every=5, progress=False))
    assert len(history["epochs"]) == 1


def test_a_non_finite_loss_stops_the_run_at_once(fmnist_root, tmp_path, monkeypatch):
    real_loss = engine.googlenet_loss
    calls = []

    def diverging(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("inf") if len(calls) == 3 else loss

    monkeypatch.setattr(engine, "googlenet_loss", diverging)
    config = tiny_config(tmp_path, fmnist_root, log_every=100)
    with pytest.raises(NonFiniteLossError, match="at step 3 .*Lower --lr"):
        train(config)
    assert len(calls) == 3 and not config.run_dir.exists()  # stopped in epoch 1, nothing saved


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "checkpoint.pt", partial(torch.save, {"model": {"w": torch.ones(3)}}))

    def dies_mid_write(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError):
        write_atomically(path, partial(torch.save, {"model": {"w": torch.zeros(3)}}))
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(3))


def test_every_random_stream_has_its_own_seed():
    purposes = ("shuffle", "augment", "dropout", "sample")
    # (seed, purpose, epoch, rank, index)
    keys = list(itertools.product((0, 1), purposes, range(3), range(3), range(3)))
    seeds = [seed_for(*key) for key in keys]
    assert len(set(seeds)) == len(keys) and all(0 <= s < 2**63 for s in seeds)
    # the formulas before: rank 0's augmentation of epoch 0 was epoch 1's shuffle, and seed 1's
    # dropout on rank 0 was seed 0's on rank 1 (seed + rank)
    assert seed_for(0, "augment", 0, 0) != seed_for(0, "shuffle", 1)
    assert seed_for(1, "dropout", 0, 0) != seed_for(0, "dropout", 0, 1)
    # a hash of the key, not Python's randomised hash(): the same in every process and every run
    assert seed_for(0, "shuffle", 1) == 3590898526986585266
    assert seed_for(3, "weights") == 3  # torch.manual_seed(3), then the model: the run's initial weights
    with pytest.raises(ValueError, match="purpose must be one of"):
        seed_for(0, "dropuot")


def torchrun(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` on one thread each; no process outlives it.

    torchrun starts in a session of its own, so its whole process group (workers included) is
    killed when it runs past ``timeout`` or leaves anything behind.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun ran past {timeout} s; killed with its workers. stderr:\n{err[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def train_args(fmnist_root: Path, out: Path, *extra: str) -> list[str]:
    """``googlenet.train`` flags for a tiny CPU run (each flag as the command line takes it)."""
    return ["--data-root", str(fmnist_root), "--batch-size", "16", "--out-dir", str(out), "--device", "cpu",
            "--no-progress", *extra]


# Rank 0's machine goes down right after it writes epoch 1's checkpoint (rank 1 is then stopped by
# torchrun); the command line is googlenet.train's.
CRASH_AFTER_FIRST_CHECKPOINT = """
import os
import googlenet.engine as engine
from googlenet.train import main

real_save = engine.save_checkpoint

def save_then_die(*args, **kwargs):
    real_save(*args, **kwargs)
    os._exit(3)

engine.save_checkpoint = save_then_die
main()
"""


def test_two_process_ddp_on_cpu_resumes_to_the_same_weights(fmnist_root, tmp_path):
    # dropout (the default model's) and augmentation are on; each rank trains 2 batches an epoch
    run = ("--subset=64", "--epochs=2", "--average=ema")
    straight, crashing = tmp_path / "straight", tmp_path / "crashing"
    result = torchrun(["-m", "googlenet.train", *train_args(fmnist_root, straight, *run)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("device: cpu") == 1  # only rank 0 prints
    history = json.loads((straight / "metrics.json").read_text())
    assert history["world_size"] == 2 and history["epochs"][0]["images"] == 64  # 2 ranks x 2 batches x 16
    assert history["command"].startswith("python -m googlenet.train --data-root")
    assert sorted(p.name for p in straight.iterdir()) == ["checkpoint.pt", "metrics.json"]
    script = tmp_path / "crash_after_first_checkpoint.py"
    script.write_text(CRASH_AFTER_FIRST_CHECKPOINT)
    assert torchrun([str(script), *train_args(fmnist_root, crashing, *run)]).returncode != 0
    assert read_checkpoint(crashing / "checkpoint.pt")["epoch"] == 1
    resumed = torchrun(["-m", "googlenet.train", *train_args(fmnist_root, crashing, *run, "--resume")])
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-3000:]

    a, b = (read_checkpoint(out / "checkpoint.pt") for out in (straight, crashing))
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"{len(differ)} of {len(a['model'])} weight tensors differ, e.g. {differ[:3]}"
    assert _equal(a["optimizer"], b["optimizer"]) and _equal(a["average"], b["average"])
    losses = [[e["train_loss"] for e in state["history"]["epochs"]] for state in (a, b)]
    assert losses[0] == losses[1]


def test_checkpoints_of_every_kind_load(fmnist_root, tmp_path):
    config = tiny_config(tmp_path, fmnist_root, epochs=1, subset=16, average="ema")
    train(config)
    model, meta = load_model(config.run_dir / "checkpoint.pt")
    small = export_for_evaluation(config.run_dir / "checkpoint.pt", tmp_path / "model.pt")
    state = read_checkpoint(small)
    assert state["optimizer"] is None and state["rng"] is None
    assert state["model"]["fc.weight"].dtype == torch.half
    assert not any(k.startswith("aux") for k in state["model"]) and not state["model_kwargs"]["aux_logits"]
    exported, meta_small = load_model(small)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-2)
    assert meta_small["classes"] == meta["classes"] and meta_small["epoch"] == 1

    # a checkpoint as the previous layout wrote it: the RNG state a bare tensor, no provenance
    old = {k: state[k] for k in ("model_kwargs", "classes", "mean", "std", "dataset", "image_size", "resize")}
    old["model_kwargs"] = meta["model_kwargs"]  # the training run's model, auxiliary heads included
    old.update(format="googlenet-checkpoint", version=1, model=model.state_dict(), optimizer={}, scaler={},
               average={"weights": model.state_dict(), "updates": 3}, rng=torch.get_rng_state(), epoch=1)
    legacy, _ = load_model(write_atomically(tmp_path / "old.pt", partial(torch.save, old)))
    with torch.no_grad():
        assert torch.equal(legacy(x), model(x))


RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"


def test_committed_checkpoints_load():
    paths = sorted(RESULTS.glob("*/model.pt"))
    assert [p.parent.name for p in paths] == ["fashion_mnist_96", "fashion_mnist_small"]
    for path in paths:
        model, meta = load_model(reference_checkpoint(path.parent.name))
        assert not model.training and len(meta["classes"]) == model.fc.out_features, path
