"""The benchmark runs for real on a tiny setting and writes JSON that the book's loader and plot read.

No timing is asserted: only that every number is there, positive, and in the schema.
"""

import dataclasses
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

from googlenet import bench, provenance

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
sys.path.insert(0, str(RESULTS.parent))
import booktools  # noqa: E402  (chapter 11 reads the results with the book's own helpers)

TINY = ["--sizes", "32", "--batch-size", "2", "--settings", "fp32", "--repetitions", "2", "--warmup", "1",
        "--num-classes", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    result = bench.main([*TINY, "--json", str(path)])
    return result, path


def test_json_schema(tiny_run):
    result, path = tiny_run
    loaded = booktools.load_results(path)
    assert loaded == json.loads(json.dumps(result))
    assert loaded["config"]["device"] == "cpu" and loaded["versions"]["torch"] and loaded["date"]
    assert loaded["config"]["settings"] == ["fp32"] and loaded["skipped"] == []
    assert loaded["command"].startswith("python -m googlenet.bench --sizes 32 ")
    # the recorded command, parsed again, is the same configuration
    again, _ = bench.parse_args(loaded["command"].split()[3:])
    assert dataclasses.asdict(again) == loaded["config"]
    rows = loaded["results"]
    models = ["torchvision", "ours", "torchvision-stock", "ours-optimized"]
    assert [(r["mode"], r["model"]) for r in rows] == [(m, n) for m in ("train", "infer") for n in models]
    for r in rows:
        assert r["error"] is None and r["size"] == 32 and r["stem"] == "small" and r["batch_size"] == 2
        assert r["images_per_s"] > 0 and r["ms_per_batch"] > 0 and r["peak_memory_mb"] > 0
        assert len(r["samples_images_per_s"]) == 2
        assert len(r["warmup_s"]) == 2 and min(r["warmup_s"]) > 0  # at least 2 warm-up steps, each timed
        if r["model"] == "torchvision-stock":
            assert r["ratio"] is None and not r["counted"]
        else:
            assert r["counted"] and math.isfinite(r["ratio"]) and r["ratio"] > 0

    # each ratio is the median over repetitions of (this model's images/s) / (torchvision's), recomputed
    # here from the raw samples the file keeps
    for r in rows:
        if r["counted"]:
            ref = next(t for t in rows if t["model"] == "torchvision" and t["mode"] == r["mode"])
            pairs = zip(r["samples_images_per_s"], ref["samples_images_per_s"], strict=True)
            ratios = [a / b for a, b in pairs]
            assert r["ratio"] == pytest.approx(statistics.median(ratios))
            assert r["images_per_s"] == pytest.approx(statistics.median(r["samples_images_per_s"]))


def test_peak_memory_is_what_a_block_adds_not_what_the_process_held():
    from googlenet.device import PeakMemory

    held = torch.zeros(2**22)  # 16 MB allocated before: not counted
    with PeakMemory("cpu") as peak:
        block = torch.ones(2**21)  # 8 MB, freed inside the block
        del block
        kept = torch.ones(2**20)  # 4 MB, still held at the end
    assert peak.mb == pytest.approx(8, abs=0.5), peak.mb
    with PeakMemory("cpu") as again:  # the same again: the freed 8 MB is not carried over
        block = torch.ones(2**21)
        del block
    assert again.mb == pytest.approx(8, abs=0.5) and held.numel() and kept.numel()


def test_table_and_plot(tiny_run):
    result, path = tiny_run
    table = bench.format_table(result).splitlines()
    assert len(table) == 2 + len(result["results"]) and "ratio" in table[0]
    ax = booktools.plot_ratios(booktools.load_results(path))
    assert len(ax.patches) == 2 * 2  # (plain, optimized) x (train, infer)
    assert [p.get_height() for p in ax.patches] == [
        r["ratio"] for m in ("ours", "ours-optimized") for r in booktools.ratio_rows(result, m)
    ]


def test_load_results_rejects_other_files(tmp_path, tiny_run):
    result, _ = tiny_run
    for broken in ({**result, "schema": 99}, {k: v for k, v in result.items() if k != "machine"},
                   {**result, "results": [{"size": 32}]}):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError):
            booktools.load_results(path)


@pytest.mark.parametrize("path", sorted([*RESULTS.glob("*.json"), *RESULTS.glob("gpu/bench.json")]),
                         ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_results_load_in_the_provenance_shape(path):
    """The committed CPU run is schema 1; it loads with today's machine and version keys."""
    result = booktools.load_results(path)
    assert result["results"] and result["machine"]["cpu"]
    schema = json.loads(path.read_text())["schema"]  # as written, before conversion
    if schema < 3:  # a resident-memory peak: not shown
        assert all(r["peak_memory_mb"] is None for r in result["results"])
    if schema < 4:  # warm-up steps not timed
        assert all(r["warmup_s"] == [] for r in result["results"])
    assert result["machine"].keys() == provenance.machine().keys()
    assert result["versions"].keys() == provenance.versions().keys()


def test_time_limit_leaves_out_the_cases_it_cannot_start():
    cfg = bench.BenchConfig(sizes=[32], batch_size=2, modes=["infer"], settings=["fp32", "channels_last"],
                            repetitions=1, num_classes=10, device="cpu", stock=False, time_limit=1e-9)
    result = bench.run_benchmark(cfg, log=lambda message: None)
    assert {r["setting"] for r in result["results"]} == {"fp32"}
    assert result["skipped"] == ["32 px infer channels_last"]
    assert bench.format_table(result).endswith("left out (time limit): 32 px infer channels_last")


def test_settings_and_defaults():
    assert bench.available_settings("cpu")[:2] == ["fp32", "channels_last"]
    assert bench.default_batch_size(99, "cpu") == 32 and bench.default_batch_size(100, "cpu") == 8
    cfg, json_path = bench.parse_args(["--quick"])
    assert cfg.sizes == [32] and cfg.batch_size == 16 and json_path is None
    with pytest.raises(ValueError, match="settings must be one of"):
        bench.BenchConfig(settings=["fp64"])
    with pytest.raises(ValueError, match="sizes must be a number >= 1"):
        bench.BenchConfig(sizes=[0])


def test_cli_help_from_a_fresh_process():
    out = subprocess.run([sys.executable, "-m", "googlenet.bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--quick" in out and "--json" in out
