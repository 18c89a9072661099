"""The three command lines, end to end on a tiny ImageFolder dataset, and their --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from googlenet import evaluate, predict, train

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
    assert (out / "checkpoint.pt").is_file() and json.loads((out / "metrics.json").read_text())["epochs"]

    report = run("googlenet.evaluate", "--checkpoint", str(out / "checkpoint.pt"))
    assert "accuracy" in report and "circle" in report and "(4 images)" in report
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert sum(map(sum, json.loads((out / "confusion_matrix.json").read_text())["confusion"])) == 12

    image = image_folder / "val" / "square" / "0.png"
    lines = run("googlenet.predict", str(image), "--checkpoint", str(out / "checkpoint.pt")).splitlines()
    assert lines[0] == str(image) and len(lines) == 4  # the image, then its top 3 of 3 classes
    assert {line.split()[1] for line in lines[1:]} == {"circle", "square", "stripes"}


@pytest.mark.parametrize("module, words", [
    (train, ["--dataset", "--resume", "--time-limit", "--amp", "torchrun", "examples"]),
    (evaluate, ["--checkpoint", "confusion"]),
    (predict, ["IMAGE", "--checkpoint", "five most likely"]),
])
def test_help_explains_each_command(module, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(w in text for w in words), text


def test_predict_rejects_a_missing_image(tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path / "nope.png"), "--checkpoint", str(tmp_path / "c.pt")])
    assert "no such image file" in capsys.readouterr().err
