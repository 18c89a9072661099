"""The command lines, end to end on a tiny ImageFolder dataset; their --help; their one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import FOLDER_CLASSES
from PIL import Image

from googlenet import evaluate, load_model, predict, reference_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

def run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the one_thread fixture, for the child process
    cmd = [sys.executable, "-m", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_evaluate_predict_end_to_end(image_folder, tmp_path):
    out = tmp_path / "run"
    log = run("googlenet.train", "--dataset", "folder", "--data-root", str(image_folder),
              "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0",
              "--out-dir", str(out), "--amp", "bf16")
    assert "device: cpu" in log and "epoch 1: train loss" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "checkpoint.pt").is_file() and metrics["epochs"]
    assert metrics["command"] == f"python -m googlenet.train --dataset folder --data-root {image_folder} " \
        f"--image-size 32 --epochs 1 --batch-size 8 --workers 0 --out-dir {out} --amp bf16"

    picture = tmp_path / "not" / "yet" / "confusion.png"  # evaluate into a folder that does not exist
    report = run("googlenet.evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(picture))
    assert "accuracy" in report and "circle" in report and "(4 images)" in report
    assert picture.stat().st_size > 1000
    assert sum(map(sum, json.loads(picture.with_suffix(".json").read_text())["confusion"])) == 12

    image = image_folder / "val" / "square" / "0.png"
    lines = run("googlenet.predict", str(image), "--checkpoint", str(out / "checkpoint.pt")).splitlines()
    assert lines[0] == str(image) and len(lines) == 4  # the image, then its top 3 of 3 classes
    assert {line.split()[1] for line in lines[1:]} == {"circle", "square", "stripes"}
    assert load_model(out / "checkpoint.pt")[1]["classes"] == list(FOLDER_CLASSES)  # folder names


@pytest.mark.parametrize("module, words", [
    (train, ["--dataset", "--resume", "--time-limit", "--amp", "torchrun", "examples", "limitations"]),
    (evaluate, ["--checkpoint", "confusion"]),
    (predict, ["IMAGE", "--checkpoint", "five most likely"]),
])
def test_help_explains_each_command(module, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(w in text for w in words), text




def fails(*args: str) -> str:
    """Run a command that must refuse its input: one line on stderr, exit status 2, no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_user_mistakes_get_one_line_and_no_traceback(tmp_path, image_folder):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(2048))
    missing = str(tmp_path / "missing.pt")
    assert "no checkpoint at" in fails("googlenet.evaluate", "--checkpoint", missing)
    assert "corrupt or truncated" in fails("googlenet.evaluate", "--checkpoint", str(corrupt))
    image = str(image_folder / "val" / "square" / "0.png")
    assert "corrupt or truncated" in fails("googlenet.predict", image, "--checkpoint", str(corrupt))
    assert "no such image file" in fails("googlenet.predict", missing, "--checkpoint", str(corrupt))
    assert "--batch-size: 0 is not >= 1" in fails("googlenet.train", "--batch-size", "0")
    assert "--lr: -1 is not > 0" in fails("googlenet.train", "--lr", "-1")
    assert "--epochs: 'two' is not an integer" in fails("googlenet.train", "--epochs", "two")
    assert "--batch-size: 0 is not >= 1" in fails("googlenet.evaluate", "--checkpoint", missing,
                                                  "--batch-size", "0")
    assert "--repetitions: 0 is not >= 1" in fails("googlenet.bench", "--repetitions", "0")
    assert "ImageFolder dataset not found" in fails("googlenet.train", "--dataset", "folder", "--data-root",
                                                    str(tmp_path / "nothing"), "--device", "cpu")


def test_predict_on_a_file_that_is_not_an_image_gets_one_line(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image, whatever its name says")
    err = fails("googlenet.predict", str(text), "--weights", "FASHION_MNIST_SMALL", "--device", "cpu")
    assert "cannot identify image file" in err and "notes.png" in err


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """Only a UserError (or a command's own user errors) is one line; a ValueError is a bug's."""
    from googlenet.cli import run_main
    from googlenet.errors import ConfigError

    def buggy(argv):
        raise ValueError("an internal mistake")

    def mistaken(argv):
        raise ConfigError("lr must be a number > 0, got -1")

    with pytest.raises(ValueError, match="an internal mistake"):
        run_main(buggy)
    with pytest.raises(SystemExit) as exit_:
        run_main(mistaken)
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: lr must be a number > 0, got -1\n"


@pytest.fixture(scope="module")
def fp16_run(image_folder, tmp_path_factory):
    """``--amp fp16`` on a CPU with flip test-time augmentation: one epoch with a gradient scaler."""
    out = tmp_path_factory.mktemp("fp16") / "run"
    flags = ["--dataset", "folder", "--data-root", str(image_folder), "--image-size", "32", "--epochs", "1",
             "--batch-size", "8", "--workers", "0", "--no-progress", "--device", "cpu", "--amp", "fp16",
             "--tta"]
    run("googlenet.train", *flags, "--out-dir", str(out))
    return flags, out


def test_fp16_on_a_cpu_trains_with_a_gradient_scaler(fp16_run):
    flags, out = fp16_run
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["scaler"] and state["scaler"]["scale"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["amp"] == "fp16"
    assert all(math.isfinite(epoch["train_loss"]) for epoch in metrics["epochs"])
    # Trained in fp16, measured in float32: the evaluate command (float32, with the run's flip
    # test-time augmentation unless told otherwise) finds the recorded loss.
    evaluate = ["googlenet.evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu"]
    run(*evaluate, "--out", str(out / "eval.png"))
    run(*evaluate, "--no-tta", "--out", str(out / "plain.png"))
    again, plain = (json.loads((out / name).read_text()) for name in ("eval.json", "plain.json"))
    assert again["loss"] == pytest.approx(metrics["epochs"][-1]["test_loss"], rel=1e-6, abs=1e-7)
    assert (again["tta"], plain["tta"]) == (True, False) and plain["loss"] != again["loss"]


def test_resuming_a_corrupt_or_evaluation_only_checkpoint_gets_one_line(fp16_run, tmp_path):
    from googlenet.checkpoint import export_for_evaluation

    flags, out = fp16_run
    corrupt, copy = tmp_path / "corrupt", tmp_path / "copy"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:4096])
    export_for_evaluation(out / "checkpoint.pt", copy / "checkpoint.pt")
    err = fails("googlenet.train", *flags, "--resume", "--out-dir", str(corrupt))
    assert "corrupt or truncated" in err
    err = fails("googlenet.train", *flags, "--resume", "--out-dir", str(copy))
    assert "holds no optimizer state (an evaluation-only copy?)" in err


def test_the_microscope_command_runs_as_a_command_and_resumes(tmp_path):
    """``python -m googlenet.microscope`` on the 28 px reference run, tiny: two layers, two steps."""
    out = tmp_path / "microscope"
    flags = ["--checkpoint", str(reference_checkpoint("fashion_mnist_small")), "--out", str(out),
             "--channels", "4", "--steps", "2", "--diverse-steps", "1", "--train-images", "50",
             "--device", "cpu"]
    log = run("googlenet.microscope", *flags, "--layers", "conv1")
    assert "conv1: 4 channels" in log
    log = run("googlenet.microscope", *flags, "--layers", "conv1", "inception3a")
    assert "conv1:" not in log and "inception3a: 4 channels" in log  # conv1 was kept
    record = json.loads((out / "microscope.json").read_text())
    assert record["provenance"]["command"].startswith("python -m googlenet.microscope --checkpoint")
    assert list(record["layers"]) == ["conv1", "inception3a"]
    assert [c["branch"] for c in record["layers"]["inception3a"]["channels"]] == [
        "branch1", "branch2", "branch3", "branch4"]
    assert (out / "inception3a-0.jpg").stat().st_size > 1000
    err = fails("googlenet.microscope", *flags, "--layers", "fc")
    assert "--layers: fc not among conv1" in err
    err = fails("googlenet.microscope", *flags, "--channels", "many")
    assert "--channels 'many'" in err


def test_a_diverging_run_stops_with_one_line(image_folder, tmp_path):
    err = fails("googlenet.train", "--dataset", "folder", "--data-root", str(image_folder), "--image-size",
                "32", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--lr", "1e30", "--no-progress",
                "--device", "cpu", "--out-dir", str(tmp_path / "run"))
    assert "loss became NaN or infinite at step" in err and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                    reason="this machine has the GPUs the test asks for")
def test_a_device_the_machine_lacks_gets_one_line(tmp_path):
    """Never a traceback, and a healthy checkpoint is never called corrupt for a device reason."""
    reference = str(reference_checkpoint("fashion_mnist_small"))
    image = tmp_path / "shoe.png"
    Image.new("L", (28, 28), 128).save(image)
    for device in ("cuda", "mps"):
        for args in (("googlenet.train", "--epochs", "1"),
                     ("googlenet.evaluate", "--checkpoint", reference),
                     ("googlenet.predict", str(image), "--checkpoint", reference)):
            err = fails(*args, "--device", device)
            assert f"device {device}:" in err and "corrupt" not in err, err
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_model(reference, map_location="cuda")
