"""Every GPU figure of the book in one command: ``python book/gpu_report.py --out book/results/gpu/``.

Book production, beside the book's helpers: not part of the installed package (it uses the package).

On one NVIDIA GPU the report runs five parts and writes one JSON file per part into ``--out``
(``bench.json``, ``mfu.json``, ...), each with :func:`googlenet.provenance.provenance`'s record
(command, date, commit, machine with the GPU's name, versions), the part's budget, its wall time
and its error: None, or what went wrong. A part that fails is recorded and the report goes on.
The training runs keep their checkpoints in ``--runs-dir``; their ``metrics.json`` is copied
into ``--out``. The budgets, sized for an H100/H200-class GPU, add up to 515 s (the last two parts
share the GPU at the same time), under 9 minutes with the start-up:

- ``bench`` (230 s): :mod:`googlenet.bench`, ours against torchvision at 224 and 32 px, training
  and inference, in fp32, channels-last, bf16 (both layouts), then torch.compile. The eager
  settings take about a minute; no case starts after 120 s, so compilation (about a minute per
  compiled case) gets the 224 px cases, and the JSON lists the cases left out.
- ``mfu`` (15 s): model-FLOPs utilisation of a bf16 training step at 224 px, batch 128: the FLOPs
  that ``torch.utils.flop_counter.FlopCounterMode`` counts in one step, divided by the time of a
  step and by the GPU's dense bf16 peak (:data:`PEAK_BF16_TFLOPS`; unknown GPU: MFU None).
- ``fashion_mnist`` (60 s, 45 s of training): the small stem at 28 px to 94% test accuracy, alone
  on the GPU: batch 512, bf16, channels-last, one-cycle over 18 epochs (about a second each);
  the time to 94% comes from the per-epoch history.
- ``reference_96`` (210 s, 158 s of training): the 96 px ImageNet-stem reference configuration
  (``book/results/fashion_mnist_96``) with ``--epochs 30``.
- ``ablation`` (210 s, 158 s of training each, beside ``reference_96``): chapters 5 and 7's
  ablation, auxiliary heads on and off for both variants and the paper's recipe, 3 seeds each:
  15 runs of ``python -m googlenet.train`` in parallel, each with ``--epochs 30``.

Training parts stop by ``--time-limit`` (75% of the part's budget; start-up, evaluation after each
epoch and saving take the rest; the one-cycle schedule runs on the clock when the limit comes
first, so it always anneals), and a run still going at the end of its part's budget is killed.
The sizes are estimates, not yet measured on a GPU: the ``wall_s`` of each file says how well they
fit. ``--dry-run`` rehearses every part end to end on the CPU at tiny sizes (about a minute) and
writes the same files; ``--parts`` picks parts; ``--data-root`` and ``--download`` are passed to
the training runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from googlenet import bench
from googlenet.cli import Parser, add_config_flags, command_line, config_flags, run_main
from googlenet.config import check_fields, flag
from googlenet.files import write_json
from googlenet.model import GoogLeNet
from googlenet.provenance import provenance

PROG = "python book/gpu_report.py"

BUDGET_S = {"bench": 230, "mfu": 15, "fashion_mnist": 60, "reference_96": 210, "ablation": 210}
PHASES = (("bench",), ("mfu",), ("fashion_mnist",), ("reference_96", "ablation"))  # a phase's parts: at once
TRAINING_SHARE = 0.75  # of a training part's budget; the rest: start-up, evaluations, saving
TARGET_ACC = 0.94
PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peaks from NVIDIA's data sheets, by a word of the GPU's name
    "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0,
    "T4": None,  # no bf16 tensor cores (65 TFLOP/s in fp16)
}
FASHION_MNIST = {"stem": "small", "epochs": 18, "batch_size": 512, "lr": 0.4, "amp": "bf16",
                 "channels_last": True, "schedule": "onecycle", "seed": 0}
REFERENCE_96 = {"image_size": 96, "variant": "torchvision", "stem": "imagenet", "epochs": 30,
                "batch_size": 128, "lr": 0.1, "amp": "bf16", "channels_last": True, "seed": 0}
ABLATION_SETTING = {"stem": "small", "epochs": 30, "batch_size": 128, "amp": "bf16", "channels_last": True}
ABLATION = {  # configuration (book/results/ablation/README.md's names) -> its flags
    "torchvision_aux": {"variant": "torchvision", "aux_logits": True},
    "torchvision_noaux": {"variant": "torchvision", "aux_logits": False},
    "paper_fast_recipe": {"variant": "paper", "aux_logits": True},
    "paper_fast_recipe_noaux": {"variant": "paper", "aux_logits": False},
    "paper_paper_recipe": {"variant": "paper", "recipe": "paper"},
}


class NoGPUError(RuntimeError):
    """The report needs a CUDA GPU (or ``--dry-run``)."""


@dataclass(frozen=True)
class Scale:
    """How large each part runs: the report on a GPU, or the dry run's tiny rehearsal on the CPU."""

    device: str
    bench: dict[str, Any]  # BenchConfig fields
    mfu: dict[str, int]  # image size, batch size, untimed and timed steps
    train: dict[str, Any] = field(default_factory=dict)  # flags added to every training run
    size_96: int = 96  # the reference_96 part's image size
    seeds: int = 3  # per ablation configuration
    slower: float = 1.0  # budgets are multiplied by this (a CPU takes longer to start than a GPU to train)

    def budget(self, part: str) -> float:
        """Seconds the part may take."""
        return self.slower * BUDGET_S[part]


FULL = Scale("cuda", mfu={"size": 224, "batch_size": 128, "warmup": 3, "steps": 10},
             bench={"sizes": [224, 32], "modes": ["infer", "train"], "repetitions": 5, "iterations": 3,
                    "settings": ["fp32", "channels_last", "bf16", "bf16+channels_last", "compile"],
                    "time_limit": 120})
DRY = Scale("cpu", mfu={"size": 64, "batch_size": 2, "warmup": 1, "steps": 2},
            bench={"sizes": [32], "batch_size": 2, "settings": ["fp32"], "repetitions": 2, "num_classes": 10,
                   "stock": False},
            # two steps leave no room to warm up: the paper's network (no batch norm) needs a low rate;
            # bf16 only where the CPU has it (emulated, it is many times slower)
            train={"subset": 64, "epochs": 1, "batch_size": 32, "lr": 0.01, "amp": "auto"}, size_96=32,
            seeds=1, slower=3.0)


@dataclass
class ReportConfig:
    """The report's command line, one flag per field."""

    out: str = flag("book/results/gpu", "folder for the JSON files, one per part")
    parts: list[str] = flag(list(BUDGET_S), "the parts to run", choices=tuple(BUDGET_S))
    dry_run: bool = flag(False, "rehearse every part on the CPU at tiny sizes (about a minute)")
    data_root: str | None = flag(None, "folder holding Fashion-MNIST (default: $GOOGLENET_DATA or ./data)")
    download: bool = flag(False, "download Fashion-MNIST if it is missing (needs internet)")
    runs_dir: str = flag("runs/gpu_report", "where the training runs keep their checkpoints")

    def __post_init__(self) -> None:
        check_fields(self)


def say(message: str) -> None:
    """One line of progress, with the time of day."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# ---------------------------------------------------------------- benchmark and MFU (in this process)


def bench_part(cfg: ReportConfig, scale: Scale) -> dict[str, Any]:
    """Ours against torchvision in every setting; the result is :func:`googlenet.bench.run_benchmark`'s."""
    result = bench.run_benchmark(bench.BenchConfig(device=scale.device, **scale.bench), log=say)
    print(bench.format_table(result), flush=True)
    result["bench_command"] = result.pop("command")  # the file's command is the report's
    return result


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step``, as FlopCounterMode counts them (convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def peak_bf16_tflops(gpu: str | None) -> float | None:
    """The GPU's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`; None for an unknown GPU or none."""
    for key, peak in PEAK_BF16_TFLOPS.items():
        if gpu and re.search(rf"\b{key}\b", gpu):
            return peak
    return None


def mfu_part(cfg: ReportConfig, scale: Scale) -> dict[str, Any]:
    """Model-FLOPs utilisation of our model's bf16, channels-last training step (auxiliary heads included)."""
    size, batch, device = scale.mfu["size"], scale.mfu["batch_size"], scale.device
    setting = bench.SETTINGS["bf16+channels_last"]
    torch.manual_seed(0)
    model = bench.prepare(GoogLeNet(1000, variant="torchvision"), "train", setting, device)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    step = bench.make_step(model, "train", setting, x, y, device)
    flops = count_flops(step)
    for _ in range(scale.mfu["warmup"]):
        step()
    bench.sync(device)
    start = time.perf_counter()
    for _ in range(scale.mfu["steps"]):
        step()
    bench.sync(device)
    seconds = (time.perf_counter() - start) / scale.mfu["steps"]
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    peak = peak_bf16_tflops(gpu)
    achieved = flops / seconds / 1e12
    say(f"mfu: {flops / 1e12:.2f} TFLOP per step in {1000 * seconds:.1f} ms: {achieved:.1f} TFLOP/s"
        + (f", {achieved / peak:.1%} of {gpu}'s {peak:.0f}" if peak else " (no known peak)"))
    return {"model": "ours (variant torchvision, auxiliary heads)", "setting": setting.name,
            "image_size": size, "batch_size": batch, "flops_per_step": flops, "seconds_per_step": seconds,
            "achieved_tflops": achieved, "peak_bf16_tflops": peak, "mfu": achieved / peak if peak else None}


# ---------------------------------------------------------------- training parts (subprocesses)


@dataclass
class Job:
    """One ``python -m googlenet.train`` process: its flags, its folder and the last lines it printed."""

    name: str
    argv: list[str]
    out_dir: Path
    process: subprocess.Popen
    tail: deque = field(default_factory=lambda: deque(maxlen=5))

    def echo(self) -> None:
        """Print the process's output as it comes, each line labelled with the run's name."""
        for line in self.process.stdout:
            self.tail.append(line.rstrip())
            say(f"{self.name}: {line.rstrip()}")


def train_runs(part: str, runs: dict[str, dict[str, Any]], cfg: ReportConfig, scale: Scale) -> list[dict]:
    """Train every run (name -> flags) at once, each in its own process; kill what outlasts the budget."""
    common = {"dataset": "fashion_mnist", "data_root": cfg.data_root, "device": scale.device,
              "progress": False, "time_limit": round(TRAINING_SHARE * scale.budget(part))}
    if cfg.download:
        common["download"] = True
    deadline, jobs = time.perf_counter() + scale.budget(part), []
    for name, flags in runs.items():
        out_dir = Path(cfg.runs_dir) / name
        argv = config_flags({**common, **flags, **scale.train, "out_dir": str(out_dir)})
        process = subprocess.Popen([sys.executable, "-m", "googlenet.train", *argv], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # the GPU computes
        jobs.append(Job(name, argv, out_dir, process))
    echoes = [threading.Thread(target=job.echo, daemon=True) for job in jobs]
    for thread in echoes:
        thread.start()
    records = [finish(job, deadline, cfg) for job in jobs]
    for thread in echoes:
        thread.join()
    return records


def finish(job: Job, deadline: float, cfg: ReportConfig) -> dict[str, Any]:
    """Wait for a run until the deadline; its command, error, and the headline of its metrics.json."""
    try:
        job.process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        code = job.process.returncode
        error = None if code == 0 else f"exit status {code}: {job.tail[-1] if job.tail else 'no output'}"
    except subprocess.TimeoutExpired:
        job.process.kill()
        job.process.wait()
        error = "killed at the end of its part's budget"
    record = {"name": job.name, "command": command_line("googlenet.train", job.argv), "error": error,
              "metrics": None, "test_acc": None, "epochs": 0, "train_time_s": None}
    source = job.out_dir / "metrics.json"
    if source.is_file():  # written after every epoch, so a killed run still has one
        target = Path(cfg.out) / job.name / "metrics.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        m = json.loads(source.read_text())
        record.update(metrics=str(target.relative_to(cfg.out)), test_acc=m["test_acc"],
                      epochs=len(m["epochs"]), train_time_s=m["train_time_s"],
                      history=[(e["train_time_s"], e["test_acc"]) for e in m["epochs"]])
    return record


def failures(runs: list[dict]) -> str | None:
    """The failed runs and why, in one line (None when every run worked)."""
    failed = [f"{r['name']}: {r['error']}" for r in runs if r["error"]]
    return "; ".join(failed) or None


def time_to(history: list[tuple[float, float]], accuracy: float) -> float | None:
    """Seconds of training until the first epoch whose test accuracy reaches ``accuracy`` (None: never)."""
    elapsed = 0.0
    for seconds, test_acc in history:
        elapsed += seconds
        if test_acc >= accuracy:
            return elapsed
    return None


def fashion_mnist_part(cfg: ReportConfig, scale: Scale) -> dict[str, Any]:
    """Fashion-MNIST to 94% as fast as the GPU goes, and the training time it took."""
    runs = train_runs("fashion_mnist", {"fashion_mnist": FASHION_MNIST}, cfg, scale)
    seconds = time_to(runs[0].get("history", []), TARGET_ACC)
    say(f"fashion_mnist: test accuracy {runs[0]['test_acc']}, {TARGET_ACC:.0%} after {seconds} s of training")
    return {"runs": runs, "target_acc": TARGET_ACC, "time_to_target_s": seconds, "error": failures(runs)}


def reference_96_part(cfg: ReportConfig, scale: Scale) -> dict[str, Any]:
    """The 96 px ImageNet-stem reference configuration for 30 epochs."""
    flags = {**REFERENCE_96, "image_size": scale.size_96}
    runs = train_runs("reference_96", {"reference_96": flags}, cfg, scale)
    return {"runs": runs, "error": failures(runs)}


def ablation_part(cfg: ReportConfig, scale: Scale) -> dict[str, Any]:
    """Every ablation configuration and seed in parallel; each configuration's mean and spread over seeds."""
    specs = {(config, seed): {**ABLATION_SETTING, "seed": seed, **flags}
             for config, flags in ABLATION.items() for seed in range(scale.seeds)}
    runs = train_runs("ablation", {f"ablation/{c}_seed{s}": f for (c, s), f in specs.items()}, cfg, scale)
    summary = {}
    for config in ABLATION:
        acc = [r["test_acc"] for r, (c, _) in zip(runs, specs, strict=True) if c == config and r["test_acc"]]
        if acc:
            summary[config] = {"seeds": len(acc), "mean_test_acc": statistics.mean(acc),
                               "spread": (max(acc) - min(acc)) / 2}
    return {"configs": ABLATION, "runs": runs, "summary": summary, "error": failures(runs)}


PARTS: dict[str, Callable[[ReportConfig, Scale], dict[str, Any]]] = {
    "bench": bench_part, "mfu": mfu_part, "fashion_mnist": fashion_mnist_part,
    "reference_96": reference_96_part, "ablation": ablation_part,
}


# ---------------------------------------------------------------- the report


def run_part(name: str, cfg: ReportConfig, scale: Scale, command: str) -> dict[str, Any]:
    """Run one part and write ``<out>/<name>.json``: provenance, budget, wall time, error, results."""
    say(f"{name}: starting (budget {scale.budget(name):.0f} s)")
    start = time.perf_counter()
    try:
        result = PARTS[name](cfg, scale)
        error = result.pop("error", None)
    except Exception as exc:  # a failing part is recorded, and the report goes on
        traceback.print_exc()
        result, error = {}, f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - start
    record = {"part": name, **provenance(command), "dry_run": cfg.dry_run, "budget_s": scale.budget(name),
              "wall_s": wall, "error": error}
    record |= {key: value for key, value in result.items() if key not in record}
    path = Path(cfg.out) / f"{name}.json"
    write_json(record, path)
    say(f"{name}: {'FAILED, ' + error if error else 'done'} after {wall:.0f} s; wrote {path}")
    return record


def run_report(cfg: ReportConfig, command: str) -> dict[str, dict[str, Any]]:
    """Run the chosen parts phase by phase (a phase's parts at the same time); returns each part's record."""
    scale = DRY if cfg.dry_run else FULL
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    records = {}
    for phase in PHASES:
        names = [name for name in phase if name in cfg.parts]
        if len(names) == 1:  # in this thread: torch.compile and the timings run undisturbed
            records[names[0]] = run_part(names[0], cfg, scale, command)
        elif names:
            with ThreadPoolExecutor(len(names)) as pool:
                futures = {name: pool.submit(run_part, name, cfg, scale, command) for name in names}
            records |= {name: future.result() for name, future in futures.items()}
    return records


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse the flags and run the report; without a GPU, only ``--dry-run`` runs."""
    args = sys.argv[1:] if argv is None else argv
    parser = Parser(prog=PROG,
                    description="Every GPU figure of the book in one command, within 9 minutes on one "
                                "H100-class GPU: the benchmark, model-FLOPs utilisation, Fashion-MNIST to "
                                "94%, the 96 px reference run and the ablation; one JSON file per part.")
    add_config_flags(parser, ReportConfig)
    cfg = ReportConfig(**vars(parser.parse_args(args)))
    if not cfg.dry_run and not torch.cuda.is_available():
        raise NoGPUError("no CUDA GPU here: the report needs one (--dry-run rehearses it on the CPU)")
    return run_report(cfg, shlex.join([*PROG.split(), *args]))


if __name__ == "__main__":
    run_main(main, (NoGPUError,))
