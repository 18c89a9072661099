"""Benchmark our GoogLeNet against ``torchvision.models.googlenet``: ``python -m googlenet.bench``.

Both models run in one process with the same weights, batch, input and settings. Every
repetition times each model in turn (the order rotates), so a machine that slows down or speeds
up during the run slows every model alike; the report gives medians, and the ratio
ours/torchvision as the median of the per-repetition ratios. The models:

- ``torchvision``: torchvision's GoogLeNet carrying our weights. For small-stem cases its conv1
  is swapped for the same 3x3/1 stem, so both compute the same function.
- ``ours``: the plain :class:`googlenet.GoogLeNet` (``variant="torchvision"``) the book teaches.
- ``ours-optimized``: :func:`~googlenet.optimize.optimize_for_training` (training) or
  :func:`~googlenet.optimize.optimize_for_inference` (inference) applied to ``ours``.
- ``torchvision-stock`` (informational, small-stem cases only): unmodified torchvision at the
  small size, with its ImageNet stem; it computes far less, so it has no ratio.

The command line has one flag per :class:`BenchConfig` field, and the JSON records the command
that repeats the run with :func:`googlenet.provenance.provenance`'s record of machine and versions.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .architecture import AUX_LOSS_WEIGHT
from .cli import Parser, add_config_flags, command_line, config_flags, run_main
from .config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, SMALL_STEM_BELOW, check_fields, flag, stem_for
from .device import PeakMemory, fast_bf16, pick_device
from .files import write_json
from .model import GoogLeNet
from .optimize import optimize_for_inference, optimize_for_training
from .provenance import provenance

SCHEMA_VERSION = 4  # 2: the machine and versions as googlenet.provenance records them, with date and commit;
# 3: peak_memory_mb is the memory the warm-up steps allocate beyond what was allocated before them
# (device.PeakMemory); before, it was the process's peak resident memory, which tracked the run order;
# 4: warmup_s, the seconds of each untimed warm-up step (the first one compiles a compiled model)
REFERENCE = "torchvision"
MODES = ("train", "infer")


@dataclass(frozen=True)
class Setting:
    """How every model in a measurement runs: precision, memory layout, compilation."""

    name: str
    autocast: str | None = None  # "bfloat16" runs the forward pass under autocast
    channels_last: bool = False
    compile: str | None = None  # a torch.compile mode ("default", "reduce-overhead": CUDA graphs)


SETTINGS = {
    s.name: s
    for s in (
        Setting("fp32"),
        Setting("channels_last", channels_last=True),
        Setting("bf16", autocast="bfloat16"),
        Setting("bf16+channels_last", autocast="bfloat16", channels_last=True),
        Setting("compile", autocast="bfloat16", channels_last=True, compile="default"),
        Setting("cuda_graphs", autocast="bfloat16", channels_last=True, compile="reduce-overhead"),
    )
}


@dataclass
class BenchConfig:
    """Everything a run depends on, one flag per field (``num_classes`` is ``--num-classes``)."""

    sizes: list[int] = flag([224, 32], f"input sizes in px; below {SMALL_STEM_BELOW} px the small stem",
                            check=AT_LEAST_1)
    batch_size: int | None = flag(None, "images per batch (default: 8 at 224 px and 32 at 32 px on CPU, "
                                        "128 and 512 on a GPU)", check=AT_LEAST_1)
    modes: list[str] = flag(list(MODES), "training steps, inference passes, or both", choices=MODES)
    settings: list[str] | None = flag(None, "default: fp32, channels_last, and bf16 variants where fast; "
                                            "compile and cuda_graphs on CUDA", choices=tuple(SETTINGS))
    repetitions: int = flag(7, "alternating rounds", check=AT_LEAST_1)
    iterations: int = flag(1, "timed steps per model per round (1 pairs the models most tightly)",
                           check=AT_LEAST_1)
    warmup: int = flag(1, "untimed steps per model (at least 2: the peak memory of a training step "
                          "comes once the optimizer's state exists; 3 when compiled)", check=NON_NEGATIVE)
    num_classes: int = flag(1000, "classifier outputs", check=AT_LEAST_1)
    device: str = flag("auto", "cpu, cuda, cuda:1, mps, or auto (the best available)")
    stock: bool = flag(True, "add unmodified torchvision at small sizes (an informational row)")
    seed: int = flag(0, "seed of the weights and the input batch", check=NON_NEGATIVE)
    time_limit: float | None = flag(None, "start no case after this many seconds but the first; the JSON "
                                          "lists the cases left out", check=POSITIVE)

    def __post_init__(self) -> None:
        check_fields(self)


def default_batch_size(size: int, device: str) -> int:
    """A batch that keeps the CPU run to minutes and fills a GPU reasonably."""
    large = stem_for(size) == "imagenet"
    if device == "cpu":
        return 8 if large else 32
    return 128 if large else 512


def available_settings(device: str) -> list[str]:
    """The default settings for a device: fp32 and layout, bf16 where fast; compilation on CUDA."""
    names = ["fp32", "channels_last"]
    if fast_bf16(device):
        names += ["bf16", "bf16+channels_last"]
    if device.startswith("cuda"):
        names += ["compile", "cuda_graphs"]
    return names


# ---------------------------------------------------------------- models


def torchvision_twin(ours: GoogLeNet) -> nn.Module:
    """torchvision's GoogLeNet computing the same function as ``ours`` (same stem, same weights)."""
    tv = torchvision.models.googlenet(
        weights=None, init_weights=True, aux_logits=ours.aux_logits, num_classes=ours.fc.out_features
    )
    if ours.stem == "small":
        tv.conv1 = _basic_conv(ours.conv1.conv)
    tv.load_state_dict(ours.state_dict(), strict=True)
    return tv


def _basic_conv(conv: nn.Conv2d) -> nn.Module:
    """torchvision's own conv-BN-ReLU block shaped like ``conv`` (the small stem's 3x3/1)."""
    from torchvision.models.googlenet import BasicConv2d

    return BasicConv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1)


@functools.lru_cache(maxsize=2)
def _built(size: int, num_classes: int, stock: bool, seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    ours = GoogLeNet(num_classes, variant="torchvision", aux_logits=True, stem=stem_for(size))
    models = {REFERENCE: torchvision_twin(ours), "ours": ours}
    if stock and stem_for(size) == "small":
        models["torchvision-stock"] = torchvision.models.googlenet(
            weights=None, init_weights=True, aux_logits=True, num_classes=num_classes
        )
    return models


def build_models(size: int, num_classes: int, stock: bool, seed: int) -> dict[str, nn.Module]:
    """Fresh copies of one case's plain models, by name; ``ours-optimized`` is derived per mode later."""
    return copy.deepcopy(_built(size, num_classes, stock, seed))


def check_same_function(a: nn.Module, b: nn.Module, x: Tensor, atol: float = 1e-4) -> float:
    """Largest logit difference between two models in eval mode; raises if above ``atol``."""
    was = a.training, b.training
    a.eval(), b.eval()
    with torch.no_grad():
        diff = (a(x) - b(x)).abs().max().item()
    a.train(was[0]), b.train(was[1])
    if diff > atol:
        raise AssertionError(f"the models differ by {diff:.2e} > {atol:.0e}: not a like-for-like comparison")
    return diff


# ---------------------------------------------------------------- measuring


def sync(device: str) -> None:
    """Wait for a CUDA device to finish its queued work (nothing to wait for elsewhere)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def aux_loss(outputs: Sequence[Tensor], targets: Tensor) -> Tensor:
    """The paper's loss for both models: main cross-entropy + AUX_LOSS_WEIGHT x each auxiliary head's."""
    logits, aux2, aux1 = outputs
    ce = F.cross_entropy
    return ce(logits, targets) + AUX_LOSS_WEIGHT * (ce(aux1.float(), targets) + ce(aux2.float(), targets))


def _autocast(setting: Setting, device: str) -> contextlib.AbstractContextManager:
    if setting.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, setting.autocast))


def make_step(
    model: nn.Module, mode: str, setting: Setting, x: Tensor, y: Tensor, device: str
) -> Callable[[], None]:
    """One timed unit: a training step (forward, loss, backward, SGD step) or an inference forward."""
    if mode == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(setting, device):
                loss = aux_loss(model(x), y)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode(), _autocast(setting, device):
                model(x)
    return step


def prepare(model: nn.Module, mode: str, setting: Setting, device: str) -> nn.Module:
    """The model placed on the device in the setting's layout, compiled if the setting asks."""
    model = model.to(device)
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if setting.compile:
        model = torch.compile(model, mode=setting.compile)
    return model


@dataclass
class Measurement:
    """One model in one case, mode and setting: medians over repetitions, and the raw samples."""

    size: int
    stem: str
    batch_size: int
    mode: str
    setting: str
    model: str
    images_per_s: float | None
    ms_per_batch: float | None
    peak_memory_mb: float | None  # what its warm-up steps allocated beyond what was held before them
    ratio: float | None  # median over repetitions of (this model's images/s) / torchvision's
    counted: bool  # False for informational rows that are not like-for-like
    samples_images_per_s: list[float]
    warmup_s: list[float]  # each untimed warm-up step; the first includes compiling, when compiled
    error: str | None = None


def _optimized(ours: nn.Module, mode: str) -> nn.Module:
    return optimize_for_training(ours) if mode == "train" else optimize_for_inference(ours)


def measure_case(
    size: int, mode: str, setting: Setting, cfg: BenchConfig, log: Callable[[str], None] = print
) -> list[Measurement]:
    """Time every model of one (size, mode, setting), alternating them repetition by repetition."""
    device, batch = cfg.device, cfg.batch_size or default_batch_size(size, cfg.device)
    plain = build_models(size, cfg.num_classes, cfg.stock, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
    check_same_function(plain["ours"], plain[REFERENCE], x[:2])
    plain["ours-optimized"] = _optimized(plain["ours"], mode)
    x, y = x.to(device), y.to(device)
    if setting.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    steps, peaks, warmups, errors = {}, {}, {}, {}
    for name, model in plain.items():
        try:
            step = make_step(prepare(model, mode, setting, device), mode, setting, x, y, device)
            # the memory the steps add to what was held before them; from the second step on, a
            # training step holds the optimizer's state as well as the gradients and activations
            warmups[name] = []
            with PeakMemory(device) as peak:
                for _ in range(max(cfg.warmup, 3 if setting.compile else 2)):  # compile/graphs need more
                    sync(device)
                    start = time.perf_counter()
                    step()
                    sync(device)
                    warmups[name].append(time.perf_counter() - start)
            steps[name], peaks[name] = step, peak.mb
        except Exception as exc:  # a setting that does not work for a model is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log(f"  {name}: {errors[name]}")

    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(cfg.repetitions):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            sync(device)
            start = time.perf_counter()
            for _ in range(cfg.iterations):
                steps[name]()
            sync(device)
            samples[name].append(batch * cfg.iterations / (time.perf_counter() - start))

    rows = []
    for name in plain:
        s = samples.get(name)
        comparable = name != "torchvision-stock"
        ratio = None
        if s and comparable and samples.get(REFERENCE):
            ratio = statistics.median(a / b for a, b in zip(s, samples[REFERENCE], strict=True))
        ips = statistics.median(s) if s else None
        rows.append(Measurement(
            size, stem_for(size), batch, mode, setting.name, name, ips,
            1000 * batch / ips if ips else None, peaks.get(name), ratio, comparable, s or [],
            warmups.get(name, []), errors.get(name),
        ))
    return rows


# ---------------------------------------------------------------- running and reporting


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Run every (setting, size, mode) of ``cfg``; returns the JSON-ready result."""
    cfg.device = str(pick_device(cfg.device))
    cfg.settings = cfg.settings or available_settings(cfg.device)
    start, results, skipped = time.perf_counter(), [], []
    # setting by setting, the compiled ones last: a time limit leaves out the slowest to start
    for name, size, mode in itertools.product(cfg.settings, cfg.sizes, cfg.modes):
        if results and cfg.time_limit is not None and time.perf_counter() - start > cfg.time_limit:
            skipped.append(f"{size} px {mode} {name}")
            continue
        log(f"{size} px ({stem_for(size)} stem), {mode}, {name} ...")
        results += measure_case(size, mode, SETTINGS[name], cfg, log)
    out = {"schema": SCHEMA_VERSION, **provenance(command_line("googlenet.bench", config_flags(asdict(cfg))))}
    out["config"] = asdict(cfg)
    out["settings"] = {name: asdict(SETTINGS[name]) for name in cfg.settings}
    out["results"] = [asdict(r) for r in results]
    out["skipped"] = skipped
    return out


def format_table(result: dict) -> str:
    """The results as a plain-text table, one row per model."""
    head = f"{'size':>5} {'stem':8} {'batch':>5} {'mode':5} {'setting':18} {'model':18} " \
           f"{'img/s':>8} {'ms/batch':>9} {'peak MB':>8} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        if r["error"]:
            lines.append(f"{r['size']:>5} {r['stem']:8} {r['batch_size']:>5} {r['mode']:5} "
                         f"{r['setting']:18} {r['model']:18} failed: {r['error'][:60]}")
            continue
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "info" if not r["counted"] else "-"
        mem = f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] is not None else "-"
        lines.append(
            f"{r['size']:>5} {r['stem']:8} {r['batch_size']:>5} {r['mode']:5} {r['setting']:18} "
            f"{r['model']:18} {r['images_per_s']:8.1f} {r['ms_per_batch']:9.1f} {mem:>8} {ratio:>6}"
        )
    return "\n".join(lines + [f"left out (time limit): {case}" for case in result["skipped"]])


def build_parser() -> Parser:
    """One flag per :class:`BenchConfig` field, and ``--quick`` and ``--json``."""
    parser = Parser(
        prog="python -m googlenet.bench",
        description="Training and inference speed of our GoogLeNet against torchvision's, same weights "
                    "and settings; prints a table and optionally writes JSON.",
    )
    add_config_flags(parser, BenchConfig)
    parser.add_argument("--quick", action="store_true",
                        help="the book's live run: 32 px, batch 16, 5 rounds, no NCHW bf16 (about a minute "
                             "on 2 CPU cores)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, Path | None]:
    """Command-line options -> (config, JSON path or None)."""
    args = vars(build_parser().parse_args(argv))
    quick, json_path = args.pop("quick"), args.pop("json")
    cfg = BenchConfig(**args)
    return (quick_config(cfg) if quick else cfg), json_path


def quick_config(cfg: BenchConfig | None = None) -> BenchConfig:
    """The setting the book runs live: about a minute on two CPU cores; nothing compiled on a GPU."""
    cfg = cfg or BenchConfig()
    cfg.device = str(pick_device(cfg.device))
    cfg.sizes, cfg.batch_size, cfg.repetitions = [32], cfg.batch_size or 16, 5
    live = [s for s in available_settings(cfg.device) if s != "bf16" and not SETTINGS[s].compile]
    cfg.settings = cfg.settings or live
    return cfg


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark from the command line: print the table, optionally write JSON."""
    cfg, json_path = parse_args(argv)
    result = run_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(result))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(result, json_path)
        print(f"wrote {json_path}")
    return result


if __name__ == "__main__":
    run_main(main)
