"""The benchmark runs for real on a tiny setting and writes JSON that the book's loader and plot read.

No timing is asserted: only that every number is there, positive, and in the schema.
"""

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from googlenet import bench

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"
TINY = ["--sizes", "32", "--batch-size", "2", "--settings", "fp32", "--repetitions", "2", "--warmup", "1",
        "--num-classes", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    result = bench.main([*TINY, "--json", str(path)])
    return result, path


def test_json_schema(tiny_run):
    result, path = tiny_run
    loaded = bench.load_results(path)
    assert loaded == json.loads(json.dumps(result))
    assert loaded["machine"]["device"] == "cpu" and loaded["versions"]["torch"]
    assert loaded["config"]["settings"] == ["fp32"]
    assert loaded["command"].startswith("python -m googlenet.bench --sizes 32 ")
    rows = loaded["results"]
    models = ["torchvision", "ours", "torchvision-stock", "ours-optimized"]
    assert [(r["mode"], r["model"]) for r in rows] == [(m, n) for m in ("train", "infer") for n in models]
    for r in rows:
        assert r["error"] is None and r["size"] == 32 and r["stem"] == "small" and r["batch_size"] == 2
        assert r["images_per_s"] > 0 and r["ms_per_batch"] > 0 and r["peak_memory_mb"] > 0
        assert len(r["samples_images_per_s"]) == 2
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


def test_table_and_plot(tiny_run):
    result, path = tiny_run
    table = bench.format_table(result).splitlines()
    assert len(table) == 2 + len(result["results"]) and "ratio" in table[0]
    ax = bench.plot_ratios(bench.load_results(path))
    assert len(ax.patches) == 2 * 2  # (plain, optimized) x (train, infer)
    assert [p.get_height() for p in ax.patches] == [
        r["ratio"] for m in ("ours", "ours-optimized") for r in bench.ratio_rows(result, m)
    ]


def test_load_results_rejects_other_files(tmp_path, tiny_run):
    result, _ = tiny_run
    for broken in ({**result, "schema": 99}, {k: v for k, v in result.items() if k != "machine"},
                   {**result, "results": [{"size": 32}]}):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError):
            bench.load_results(path)


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_committed_results_load(path):
    assert bench.load_results(path)["results"]


def test_settings_and_defaults():
    assert bench.available_settings("cpu")[:2] == ["fp32", "channels_last"]
    assert bench.default_batch_size(99, "cpu") == 32 and bench.default_batch_size(100, "cpu") == 8
    cfg, json_path = bench.parse_args(["--quick"])
    assert cfg.sizes == [32] and cfg.batch_size == 16 and json_path is None
    with pytest.raises(ValueError, match="unknown settings"):
        bench.run_benchmark(bench.BenchConfig(settings=["fp64"]))


def test_cli_help_from_a_fresh_process():
    out = subprocess.run([sys.executable, "-m", "googlenet.bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--quick" in out and "--json" in out
