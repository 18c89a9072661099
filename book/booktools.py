"""The book's own helpers and policy, kept apart from the `googlenet` library.

Chapters import this module from their own folder (`import booktools`): the notebooks run with the
chapter's folder as the working directory, locally, in the book build, under nbval and in Colab.
"""

import functools
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torchinfo
from matplotlib.axes import Axes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchinfo.enums import Units

from googlenet import GoogLeNet, TrainConfig
from googlenet.bench import MODES, SCHEMA_VERSION, Measurement
from googlenet.data import NATIVE_SIZE
from googlenet.device import device_plan, pick_device
from googlenet.model import googlenet_loss


class _ReadableSummary(torchinfo.ModelStatistics):
    """torchinfo's statistics, with unit labels printed as "(M)", not "(Units.MEGABYTES)"."""

    def __repr__(self) -> str:
        text = super().__repr__()
        for unit in Units:  # Python 3.11+ formats a str-Enum member by its name
            text = text.replace(f"({unit})", f"({unit.value})")
        return text


def summary(model: nn.Module, **kwargs) -> torchinfo.ModelStatistics:
    """`torchinfo.summary(model, **kwargs)`, printed with unit labels (M), (G) and a narrow name column.

    torchinfo's layer-name column is at least 40 characters wide; here it is as wide as the longest
    name, by torchinfo's own rule, so that a table with a `col_width` of 17 fits the book's 88 columns.
    """
    stats = torchinfo.summary(model, **kwargs)
    stats.__class__ = _ReadableSummary  # same data; only the printout differs
    stats.formatting.layer_name_width = 0
    stats.formatting.set_layer_name_width(stats.summary_list)
    return stats


# --------------------------------------------------------------------------- numbers in the prose
# A code cell records a number with glue("key", text); a markdown cell writes the same text followed by
# an HTML comment naming the key, "39<!--glue:key-->". The comment is invisible in Jupyter, Colab and
# the HTML book; tests/test_prose.py checks that the literal before it is what the cell recorded.

GLUE_PREFIX = "application/papermill.record/"  # myst-nb's mimetype prefix for a value stored unseen


def glue(key: str, text: str) -> None:
    """Record `text` under `key` exactly as myst-nb's `glue(key, text, display=False)` does.

    Written with IPython alone, so it runs in Colab and Jupyter where myst-nb is not installed; the
    book build reads the record as myst-nb's own, so `` {glue:text}`key` `` would also work.
    """
    # IPython comes with every Jupyter kernel, Colab's too; imported here so that the package's tests,
    # which import this module without a kernel, do not need it.
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    bundle, metadata = format_display_data(text)
    metadata["scrapbook"] = {"name": key, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + mime: value for mime, value in bundle.items()}, raw=True, metadata=metadata)


# --------------------------------------------------------------------------- the book's setting
# Every size a chapter computes with (epochs, seconds, images, optimisation steps) is one field of
# Sizes, and the setting picks one Sizes for the whole book: quick on a CPU (minutes per chapter),
# full on a GPU. GOOGLENET_BOOK_SETTING=quick|full overrides the choice in either direction;
# GOOGLENET_BOOK_TRAIN_SECONDS caps chapter 7's training clock (a rehearsal of the full setting).
SETTING_VARIABLE = "GOOGLENET_BOOK_SETTING"
TRAIN_SECONDS_VARIABLE = "GOOGLENET_BOOK_TRAIN_SECONDS"
TEST_IMAGES = 10_000  # Fashion-MNIST's test split, the pool the samples below are drawn from
SHOWN_CLASSES = 10  # chapter 9 shows `per_class` test images of each of Fashion-MNIST's classes


@dataclass(frozen=True)
class Sizes:
    """How much each chapter computes in one setting."""

    train_epochs: int  # chapter 7's Fashion-MNIST run
    train_seconds: int | None  # its clock limit (None: the whole schedule)
    multiview_images: int  # chapter 8: test images of the multi-view comparison
    eval_96_images: int  # chapter 8: test images the 96-px network is re-evaluated on
    per_class: int  # chapter 9: test images per class shown to the network (and training images)
    render_steps: int  # chapter 9: optimisation steps of a feature visualisation
    ablation_images: int  # chapter 9: test images of the branch-ablation table
    share_images: int  # chapter 9: of the shown test images, those the branch shares use
    ig_steps: int  # chapter 9: integrated-gradients steps
    live_per_branch: int  # chapter 9: channels of each branch of 4c rendered live
    folder_epochs: int  # chapter 10: epochs of the image-folder run
    range_steps: int  # chapter 10: steps of the learning-rate range test
    bench_repetitions: int  # chapter 11: alternating rounds of the benchmark


QUICK = Sizes(train_epochs=2, train_seconds=120, multiview_images=1_000, eval_96_images=1_000,
              per_class=50, render_steps=64, ablation_images=250, share_images=200, ig_steps=32,
              live_per_branch=1,
              folder_epochs=2, range_steps=30, bench_repetitions=5)
FULL = Sizes(train_epochs=30, train_seconds=None, multiview_images=TEST_IMAGES,
             eval_96_images=TEST_IMAGES, per_class=50, render_steps=512, ablation_images=TEST_IMAGES,
             share_images=500, ig_steps=128, live_per_branch=4, folder_epochs=5, range_steps=60,
             bench_repetitions=15)
SIZES = {"quick": QUICK, "full": FULL}


@dataclass(frozen=True)
class Setting:
    """The book's setting: its name, why it was chosen, the device, and the sizes."""

    name: str
    why: str
    device: torch.device
    sizes: Sizes

    @property
    def full(self) -> bool:
        return self.name == "full"

    def __str__(self) -> str:
        return f"{self.name.capitalize()} setting ({self.why}), on {self.device}."


def book_setting(device: str = "auto") -> Setting:
    """Quick on a CPU, full on a GPU, unless ``GOOGLENET_BOOK_SETTING`` says otherwise."""
    dev = pick_device(device)
    asked = os.environ.get(SETTING_VARIABLE, "").strip().lower()
    if asked and asked not in SIZES:
        raise ValueError(f"{SETTING_VARIABLE}={asked!r}: expected one of {', '.join(SIZES)}")
    if asked:
        name, why = asked, f"{SETTING_VARIABLE}={asked}"
    elif dev.type == "cpu":
        name, why = "quick", f"no GPU; {SETTING_VARIABLE}=full for the full one"
    else:
        name, why = "full", f"{dev.type} found; {SETTING_VARIABLE}=quick for a rehearsal"
    sizes = SIZES[name]
    if cap := os.environ.get(TRAIN_SECONDS_VARIABLE):
        if not cap.isdigit() or int(cap) == 0:
            raise ValueError(f"{TRAIN_SECONDS_VARIABLE}={cap!r}: expected a whole number of seconds")
        seconds = int(cap) if sizes.train_seconds is None else min(int(cap), sizes.train_seconds)
        sizes = replace(sizes, train_seconds=seconds)
        why += f", training capped at {seconds} s by {TRAIN_SECONDS_VARIABLE}"
    return Setting(name, why, dev, sizes)


def fashion_mnist_config(setting: Setting, *, verbose: bool = True, **overrides: Any) -> TrainConfig:
    """Chapters 7 and 8's Fashion-MNIST run in the book's setting; says what it runs.

    Quick: at most ``train_epochs`` epochs and ``train_seconds`` of training (the one-cycle schedule
    runs on the clock, so it always finishes its annealing). Full: every epoch, the device's batch
    size with the learning rate scaled linearly from the recipe's 0.1 at 128, and an EMA of the
    weights. Both: channels_last, the device's mixed precision. With ``verbose``, prints the run and
    every decision taken from the device, with its reason.
    """
    plan = device_plan(setting.device)
    sizes = setting.sizes
    settings = {"dataset": "fashion_mnist", "channels_last": True, "device": str(setting.device),
                "amp": plan.amp, "epochs": sizes.train_epochs, "time_limit": sizes.train_seconds}
    if setting.full:
        settings.update(batch_size=plan.batch_size, lr=0.1 * plan.batch_size / 128, average="ema")
    if verbose:
        clock = f", at most {sizes.train_seconds} s" if sizes.train_seconds else ""
        precision = "bf16" if plan.amp == "bf16" else plan.amp if plan.amp != "none" else "float32"
        print(f"{setting.name} setting: {sizes.train_epochs} epochs{clock} of training in {precision}")
        print("\n".join("  " + line for line in plan.lines()))
    return TrainConfig(**{**settings, **overrides})


# --------------------------------------------------------------------------- ablation runs
# Chapters 5 and 7 compare training runs committed under results/ablation/<config>_seed<k>/ (eight
# minutes each) and results/ablation_full/<config>_seed<k>/ (whole schedules of the speedrun recipe).

ABLATION = Path("results") / "ablation"
ABLATION_FULL = Path("results") / "ablation_full"


def ablation_runs(configs: list[str], root: Path = ABLATION) -> dict[str, list[dict]]:
    """Every seed's metrics.json of each configuration, in seed order: {config: [metrics, ...]}."""
    runs = {}
    for config in configs:
        found = [json.loads(p.read_text()) for p in root.glob(f"{config}_seed*/metrics.json")]
        runs[config] = sorted(found, key=lambda m: m["config"]["seed"])
    return runs


def accuracy_summary(runs: dict[str, list[dict]]) -> dict[str, tuple[float, float]]:
    """Final test accuracy per configuration: (mean, spread), spread = half the seeds' range."""
    summary = {}
    for config, seeds in runs.items():
        acc = [m["test_acc"] for m in seeds]
        summary[config] = (statistics.mean(acc), (max(acc) - min(acc)) / 2)
    return summary


def images_per_second(metrics: dict) -> float:
    """Training images per second of training time over the whole run."""
    return sum(e["images"] for e in metrics["epochs"]) / metrics["train_time_s"]


def learnt(metrics: dict) -> bool:
    """Whether a run learnt anything: finite training losses and a final test accuracy twice chance."""
    finite = all(math.isfinite(s["loss"]) for s in metrics["steps"])
    return finite and metrics["test_acc"] > 2 / len(metrics["classes"])


def print_ablation_table(runs: dict[str, list[dict]]) -> None:
    """One line per run, then each configuration's final test accuracy as mean ± spread."""
    print(f"{'configuration':19s} {'seed':>4s} {'epochs':>6s} {'last loss':>9s} {'test acc':>8s}")
    for config, seeds in runs.items():
        for m in seeds:
            print(f"{config:19s} {m['config']['seed']:4d} {m['epochs'][-1]['at_epoch']:6.2f}"
                  f" {m['steps'][-1]['loss']:9.3f} {m['test_acc']:8.2%}")
    print()
    for config, (mean, spread) in accuracy_summary(runs).items():
        print(f"{config:19s} {len(runs[config])} seeds: test accuracy {mean:.2%} ± {spread:.2%}")


def compare(runs: dict[str, list[dict]], baseline: str, other: str) -> tuple[float, float]:
    """(mean accuracy of ``other`` minus ``baseline``, their two spreads together)."""
    summary = accuracy_summary(runs)
    (base, base_spread), (mean, spread) = summary[baseline], summary[other]
    return mean - base, base_spread + spread


def print_comparison(runs: dict[str, list[dict]], baseline: str, other: str) -> None:
    """The difference of the means, and whether it is larger than the seeds' spreads together."""
    diff, spreads = compare(runs, baseline, other)
    verdict = "a measurable difference" if abs(diff) > spreads else "no measurable difference"
    print(f"{other} - {baseline}: {100 * diff:+.2f} points; spreads together"
          f" {100 * spreads:.2f} points: {verdict}")


def plot_ablation(runs: dict[str, list[dict]], axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Training-batch accuracy (left) and test accuracy after each epoch (right) against epochs."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")[1]
    for i, (config, seeds) in enumerate(runs.items()):
        for m, style in zip(seeds, ("-", "--", ":", "-."), strict=False):
            label, color = f"{config}, seed {m['config']['seed']}", f"C{i}"
            steps = m["steps"]
            axes[0].plot([s["epoch"] for s in steps], [100 * s["acc"] for s in steps], style,
                         color=color, lw=1, label=label)
            epochs = m["epochs"]
            axes[1].plot([e["at_epoch"] for e in epochs], [100 * e["test_acc"] for e in epochs],
                         "o" + style, color=color, label=label)
    axes[0].set(ylabel="accuracy (%)", title="main classifier on the training batches")
    axes[1].set(ylabel="accuracy (%)", title="test set, after each epoch and at the end")
    for ax in axes:
        ax.set(xlabel="epochs of training")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return axes


# --------------------------------------------------------------------------- speedrun tuning
# The speedrun recipe's tuning runs (results/speedrun/tuning/<name>/): one seed each, on the
# validation split, compared by epochs (each run's training FLOPs), never by the clock.


@functools.cache
def train_flops_per_image(size: int, aux_logits: bool = True) -> float:
    """FLOPs of one training step per image (forward and backward) of the small-stem torchvision
    layout at ``size`` x ``size`` px, with its auxiliary heads unless ``aux_logits=False``, counted
    by PyTorch's FlopCounterMode."""
    model = GoogLeNet(num_classes=10, variant="torchvision", stem="small", in_channels=1,
                      aux_logits=aux_logits).train()
    x, y = torch.zeros(2, 1, size, size), torch.tensor([0, 1])
    with FlopCounterMode(display=False) as counter:
        googlenet_loss(model(x), y).backward()
    return counter.get_total_flops() / len(y)


def full_size_epochs(metrics: dict) -> float:
    """A run's training FLOPs in epochs at the dataset's full size (28 px for Fashion-MNIST)."""
    c = metrics["config"]
    full = c["image_size"] or NATIVE_SIZE[metrics["dataset"]]
    sizes = c["progressive_sizes"] or [full]
    per_size = {s: train_flops_per_image(s) for s in {*sizes, full}}
    return c["epochs"] * statistics.mean(per_size[s] for s in sizes) / per_size[full]


def seconds_to_accuracy(metrics: dict, target: float) -> float | None:
    """Training seconds up to the first epoch whose test accuracy reaches ``target`` (None: never)."""
    seconds = 0.0
    for epoch in metrics["epochs"]:
        seconds += epoch["train_time_s"]
        if epoch["test_acc"] >= target:
            return seconds
    return None


# --------------------------------------------------------------------------- benchmark results
# Chapter 11 reads the benchmark's JSON files (python -m googlenet.bench --json ...) from results/.

BENCH_KEYS = {"command", "date", "commit", "machine", "versions", "config", "results", "skipped"}


def load_results(path: str | Path) -> dict:
    """A result file of the benchmark, in its current schema (an older one is converted)."""
    result = json.loads(Path(path).read_text())
    if result.get("schema") == 1:
        result = _from_schema_1(result)
    if result.get("schema") == 2:
        result = _from_schema_2(result)
    if result.get("schema") == 3:
        result = _from_schema_3(result)
    if result.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {result.get('schema')!r}, expected 1 to {SCHEMA_VERSION}")
    if BENCH_KEYS - result.keys():
        raise ValueError(f"{path}: missing keys {sorted(BENCH_KEYS - result.keys())}")
    fields = set(Measurement.__dataclass_fields__)
    for row in result["results"]:
        if fields - row.keys():
            raise ValueError(f"{path}: a result row lacks {sorted(fields - row.keys())}")
    return result


def _from_schema_1(result: dict) -> dict:
    """A schema-1 result (the benchmark's own machine record) in googlenet.provenance's shape."""
    m = result["machine"]
    machine = {"platform": m["platform"], "cpu": m["cpu"], "cores": m["cpu_count"],
               "threads": m["torch_threads"], "gpu": m["gpu"],
               "native_bf16": m["bf16_supported"] if m["device"] == "cpu" else None}
    return {**result, "schema": 2, "date": None, "commit": None, "machine": machine,
            "versions": {**result["versions"], "cuda": None}, "skipped": []}


def _from_schema_2(result: dict) -> dict:
    """A schema-2 result without its peak memory: the process's peak resident memory, which
    tracked the order the models ran in rather than any one model, so it is left out."""
    rows = [{**row, "peak_memory_mb": None} for row in result["results"]]
    return {**result, "schema": 3, "results": rows}


def _from_schema_3(result: dict) -> dict:
    """A schema-3 result, which did not time its warm-up steps."""
    return {**result, "schema": 4, "results": [{**row, "warmup_s": []} for row in result["results"]]}


def ratio_rows(result: dict, model: str = "ours-optimized") -> list[dict]:
    """The counted rows of one model, each with its ratio to torchvision."""
    return [r for r in result["results"] if r["model"] == model and r["ratio"] is not None]


def plot_ratios(result: dict, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Bar chart of ours/torchvision per (size, mode, setting), for plain and optimized ours."""
    if ax is None:
        ax = plt.subplots(figsize=(9, 3.8))[1]
    order = {name: i for i, name in enumerate(result["config"]["settings"])}
    cases = {(r["size"], r["mode"], r["setting"]) for r in result["results"] if r["ratio"] is not None}
    keys = sorted(cases, key=lambda k: (-k[0], MODES.index(k[1]), order.get(k[2], len(order))))
    width = 0.38
    for i, model in enumerate(("ours", "ours-optimized")):
        ratios = {(r["size"], r["mode"], r["setting"]): r["ratio"] for r in ratio_rows(result, model)}
        xs = [k + (i - 0.5) * width for k in range(len(keys))]
        ax.bar(xs, [ratios.get(k, 0.0) for k in keys], width, label=model)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(keys)), [f"{s} px {m}\n{st}" for s, m, st in keys], fontsize=7)
    ax.set_ylabel("images/s, ours / torchvision")
    machine = result["machine"]
    ax.set_title(title or f"{machine['gpu'] or machine['cpu']}", fontsize=9)
    ax.legend(fontsize=8)
    return ax

