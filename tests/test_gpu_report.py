"""The GPU report rehearsed on the CPU (``--dry-run``): every part's JSON, a failing part, the FLOP count."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from googlenet import GoogLeNet, bench, provenance, table1
from googlenet.cli import run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import booktools  # noqa: E402  (chapters 7, 8 and 11 read the report's files with the book's helpers)
import gpu_report  # noqa: E402  (book production: book/gpu_report.py, beside the book's helpers)

ENVELOPE = {"part", "command", "date", "commit", "machine", "versions", "dry_run", "budget_s", "wall_s",
            "error"}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def report(one_thread, fmnist_root, tmp_path_factory):
    """The whole dry run, once: {part: the JSON it wrote}, and the output folder."""
    out, runs = tmp_path_factory.mktemp("gpu"), tmp_path_factory.mktemp("runs")
    gpu_report.main(["--dry-run", "--out", str(out), "--runs-dir", str(runs), "--data-root",
                     str(fmnist_root)])
    return {part: json.loads((out / f"{part}.json").read_text()) for part in gpu_report.BUDGET_S}, out


def finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_every_part_writes_its_provenance_and_no_error(report):
    records, _ = report
    for part, record in records.items():
        assert ENVELOPE <= record.keys(), part
        assert record["part"] == part and record["error"] is None and record["dry_run"]
        assert record["command"].startswith("python book/gpu_report.py --dry-run")
        assert record["machine"].keys() == provenance.machine().keys() and record["machine"]["cpu"]
        assert record["versions"]["torch"] == torch.__version__ and record["date"]
        assert finite(record["wall_s"]) and record["wall_s"] > 0 and finite(record["budget_s"])


def test_bench_part_is_a_benchmark_file_the_book_reads(report):
    _, out = report
    result = booktools.load_results(out / "bench.json")
    assert result["bench_command"].startswith("python -m googlenet.bench --sizes 32 ")
    assert {(r["mode"], r["setting"]) for r in result["results"]} == {("train", "fp32"), ("infer", "fp32")}
    assert all(r["error"] is None and finite(r["images_per_s"]) and r["images_per_s"] > 0
               for r in result["results"])
    assert len(booktools.plot_ratios(result).patches) == 4


def test_mfu_part_counts_the_training_steps_flops(report):
    mfu = report[0]["mfu"]
    assert mfu["setting"] == "bf16+channels_last" and (mfu["image_size"], mfu["batch_size"]) == (64, 2)
    assert finite(mfu["seconds_per_step"]) and finite(mfu["achieved_tflops"]) and mfu["achieved_tflops"] > 0
    assert mfu["peak_bf16_tflops"] is None and mfu["mfu"] is None  # no GPU, no known peak
    # an independent count: each convolution and linear layer's multiply-adds, from forward hooks
    torch.manual_seed(0)
    model = GoogLeNet(1000, variant="torchvision").train()
    macs = {}

    def count(module, inputs, output):
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * math.prod(module.kernel_size)
        macs[module] = output.numel() * per_output

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(count)
    model(torch.randn(2, 3, 64, 64))
    # forward 2 FLOPs per multiply-add, backward twice that (input and weight gradients), except for
    # the first convolution, whose input needs no gradient
    assert mfu["flops_per_step"] == 6 * sum(macs.values()) - 2 * macs[model.conv1.conv]


def test_flop_counter_agrees_with_table1_on_a_forward_pass():
    model = GoogLeNet(10, variant="paper").eval()
    with torch.no_grad():
        flops = gpu_report.count_flops(lambda: model(torch.randn(1, 3, 96, 96)))
    assert flops == 2 * sum(row.macs for row in table1(model, 96))


def test_training_parts_record_their_runs(report):
    records, out = report
    fast, ref, ablation = records["fashion_mnist"], records["reference_96"], records["ablation"]
    assert fast["target_acc"] == 0.94 and fast["time_to_target_s"] is None  # 64 images cannot reach 94%
    for run in fast["runs"] + ref["runs"] + ablation["runs"]:
        assert run["error"] is None and run["epochs"] == 1 and 0 <= run["test_acc"] <= 1
        assert finite(run["train_time_s"]) and (out / run["metrics"]).is_file()
        assert run["command"].startswith("python -m googlenet.train --dataset fashion_mnist ")
        assert " --subset 64 " in run["command"] and " --time-limit " in run["command"]
    assert "--batch-size 32" in fast["runs"][0]["command"] and "--lr 0.01" in fast["runs"][0]["command"]
    assert "--image-size 32 " in ref["runs"][0]["command"] and "--stem imagenet" in ref["runs"][0]["command"]
    assert [r["name"] for r in ablation["runs"]] == [f"ablation/{c}_seed0" for c in gpu_report.ABLATION]
    assert ablation["summary"].keys() == gpu_report.ABLATION.keys()
    assert all(finite(s["mean_test_acc"]) and s["seeds"] == 1 for s in ablation["summary"].values())
    runs = booktools.ablation_runs(list(gpu_report.ABLATION), root=out / "ablation")  # as chapters 5, 7 read
    assert all(len(seeds) == 1 and seeds[0]["config"]["subset"] == 64 for seeds in runs.values())


def test_a_failing_part_is_recorded_and_the_others_run(monkeypatch, tmp_path):
    def broken(cfg, scale):
        raise RuntimeError("the benchmark broke")

    monkeypatch.setitem(gpu_report.PARTS, "bench", broken)
    monkeypatch.setitem(gpu_report.FASHION_MNIST, "seed", -1)  # the training process refuses it
    gpu_report.main(["--dry-run", "--parts", "bench", "fashion_mnist", "mfu", "--out", str(tmp_path / "out"),
                     "--runs-dir", str(tmp_path / "runs")])
    records = {p: json.loads((tmp_path / "out" / f"{p}.json").read_text()) for p in ("bench", "mfu",
                                                                                     "fashion_mnist")}
    assert records["bench"]["error"] == "RuntimeError: the benchmark broke"
    assert "exit status 2: error: argument --seed: -1 is not >= 0" in records["fashion_mnist"]["error"]
    assert records["fashion_mnist"]["runs"][0]["metrics"] is None
    assert records["mfu"]["error"] is None and records["mfu"]["flops_per_step"] > 0
    assert not (tmp_path / "out" / "ablation.json").exists()


def test_without_a_gpu_only_the_dry_run_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_report", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        run_main(gpu_report.main, (gpu_report.NoGPUError,))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA GPU") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_budgets_fit_nine_minutes_and_peaks_match_gpu_names():
    sequential = sum(max(gpu_report.BUDGET_S[p] for p in phase) for phase in gpu_report.PHASES)
    assert sequential <= 9 * 60 - 20  # the rest: the report's own start-up
    parts = {p for phase in gpu_report.PHASES for p in phase}
    assert parts == set(gpu_report.PARTS) == set(gpu_report.BUDGET_S)
    assert bench.BenchConfig(**gpu_report.FULL.bench).time_limit < gpu_report.BUDGET_S["bench"]
    names = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.0,
             "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA L4": 121.0, "NVIDIA L40S": None, "Tesla T4": None,
             None: None}
    assert {name: gpu_report.peak_bf16_tflops(name) for name in names} == names
