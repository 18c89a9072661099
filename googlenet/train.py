"""Train GoogLeNet: one readable loop, the paper's recipe or a fast modern one.

From Python::

    from googlenet.train import TrainConfig, train
    history = train(TrainConfig(dataset="fashion_mnist", epochs=2, out_dir="runs/fmnist"))

From a shell (each :class:`TrainConfig` field is a flag; ``--help`` lists them)::

    python -m googlenet.train --dataset cifar10 --epochs 30 --amp --channels-last
    torchrun --nproc_per_node=4 -m googlenet.train --dataset imagenette --recipe paper

A run writes ``<out_dir>/checkpoint.pt`` after every epoch (``--resume`` continues from it)
and ``<out_dir>/metrics.json`` (the history this function returns).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import check_state_dict, read_checkpoint, save_checkpoint
from .data import DATASETS, Data, canonical_name, load_data, make_loader
from .evaluate import evaluate
from .model import STEMS, VARIANTS, GoogLeNet, GoogLeNetOutputs, googlenet_loss

SCHEDULES = ("onecycle", "cosine", "step", "constant")
AVERAGES = ("none", "ema", "polyak")
AMP = ("none", "auto", "bf16", "fp16")
MAX_LR_DIVISOR = 25  # one-cycle warm-up starts at lr / 25, as torch's OneCycleLR does


def _flag(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field whose ``help`` (and ``choices``...) the command line reuses."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything one training run needs; field ``batch_size`` is the flag ``--batch-size``.

    The defaults are the fast modern recipe; :meth:`from_recipe` gives the paper's.
    """

    # data
    dataset: str = _flag("fashion_mnist", "dataset to train on", choices=DATASETS)
    data_root: str | None = _flag(None, "folder holding the datasets (for 'folder': the ImageFolder tree "
                                        "with train/ and val/); default: $GOOGLENET_DATA or ./data")
    download: bool = _flag(False, "download the dataset if it is missing (needs internet)")
    image_size: int | None = _flag(None, "side of the training images for image-file datasets (default 224)")
    subset: int | None = _flag(None, "use only this many images of each split (a fixed random sample)")
    augment: bool = _flag(True, "random crops and horizontal flips of the training images")
    on_device: bool = _flag(True, "keep in-memory datasets (Fashion-MNIST, CIFAR-10) on the GPU and "
                                  "augment there")
    workers: int = _flag(4, "loader processes decoding image files (0: decode in the main process)")
    # model
    variant: str = _flag("torchvision", "'torchvision' (batch norm) or 'paper' (as published)",
                         choices=VARIANTS)
    stem: str = _flag("auto", "'small' keeps small images at full resolution; auto: small below 100 px",
                      choices=("auto", *STEMS))
    aux_logits: bool = _flag(True, "train with the two auxiliary classifiers")
    dropout: float | None = _flag(None, "dropout before the classifier (default: the variant's)")
    # optimisation
    recipe: str = _flag("fast", "'fast' (these defaults) or 'paper' (SGD, step schedule, Polyak averaging); "
                                "other flags override the recipe's values", choices=("fast", "paper"))
    epochs: int = _flag(10, "passes over the training set")
    batch_size: int = _flag(128, "images per step (per process under torchrun)")
    optimizer: str = _flag("sgd", "'sgd' (with momentum) or 'adamw'", choices=("sgd", "adamw"))
    lr: float = _flag(0.1, "peak learning rate")
    momentum: float = _flag(0.9, "SGD momentum")
    nesterov: bool = _flag(True, "Nesterov momentum")
    weight_decay: float = _flag(5e-4, "L2 penalty on the weights")
    schedule: str = _flag("onecycle", "learning-rate schedule: onecycle (warm up, then cosine to zero), "
                                      "cosine (no warm-up), step (the paper's), constant", choices=SCHEDULES)
    warmup: float = _flag(0.15, "fraction of training spent warming up (onecycle)")
    step_every: int = _flag(8, "step schedule: epochs between cuts")
    step_gamma: float = _flag(0.96, "step schedule: factor of each cut (0.96 = the paper's 4%)")
    label_smoothing: float = _flag(0.1, "share of each target spread over all classes")
    aux_weight: float = _flag(0.3, "weight of each auxiliary classifier's loss (the paper's 0.3)")
    average: str = _flag("none", "evaluate averaged weights: ema (updated every step) or polyak "
                                 "(uniform, every epoch)", choices=AVERAGES)
    ema_decay: float = _flag(0.999, "EMA: how much of the old average each step keeps")
    # speed
    amp: str = _flag("none", "mixed precision: bf16, fp16 (with a gradient scaler), or auto (--amp alone)",
                     choices=AMP, const="auto")
    channels_last: bool = _flag(False, "channels-last memory format (faster convolutions on most hardware)")
    compile: bool = _flag(False, "torch.compile the model (slow start, faster steps)")
    device: str = _flag("auto", "cpu, cuda, cuda:1, mps, or auto (the best available)")
    # bookkeeping
    seed: int = _flag(0, "random seed (weights, shuffling, augmentation, dropout)")
    out_dir: str | None = _flag(None, "where checkpoint.pt and metrics.json go (default: runs/<dataset>)")
    resume: bool = _flag(False, "continue the run saved in --out-dir exactly where it stopped")
    time_limit: float | None = _flag(None, "stop cleanly after this many seconds of training; the schedule "
                                           "then runs on time instead of steps")
    log_every: int = _flag(20, "steps between entries of the step history")
    progress: bool = _flag(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        self.dataset = canonical_name(self.dataset)
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {choices}, got {getattr(self, f.name)!r}")

    @classmethod
    def from_recipe(cls, recipe: str, **overrides: Any) -> TrainConfig:
        """The ``"paper"`` or ``"fast"`` recipe, with any field overridden."""
        return cls(**{**RECIPES[recipe], **overrides})

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or Path("runs") / self.dataset)


# The paper (section 6): asynchronous SGD, momentum 0.9, learning rate cut by 4% every 8 epochs,
# Polyak averaging for the final model. Its base learning rate and weight decay are not given;
# 0.01 and 2e-4 are those of Caffe's BVLC GoogLeNet reproduction.
RECIPES: dict[str, dict[str, Any]] = {
    "fast": {"recipe": "fast"},
    "paper": {
        "recipe": "paper", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False,
        "weight_decay": 2e-4, "schedule": "step", "step_every": 8, "step_gamma": 0.96,
        "label_smoothing": 0.0, "aux_weight": 0.3, "average": "polyak",
    },
}


# --------------------------------------------------------------------------- the loop
def train_step(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, *,
    scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
    aux_weight: float = 0.3, label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """One optimisation step; returns the (detached) loss and the main logits."""
    with torch.autocast(x.device.type, amp_dtype) if amp_dtype else contextlib.nullcontext():
        out = model(x)
        loss = googlenet_loss(out, y, aux_weight=aux_weight, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    logits = out.logits if isinstance(out, GoogLeNetOutputs) else out
    return loss.detach(), logits.detach()


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One pass over the training set (or until the time limit); returns its loss, accuracy and speed."""
    c, loader = run.config, run.train_loader
    run.model.train()
    loader.set_epoch(epoch)
    totals = window = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss sum, correct, images
    start = run.epoch_start = time.perf_counter()
    images = batches = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not (c.progress and run.rank == 0),
               leave=True, dynamic_ncols=True, file=sys.stdout)
    for x, y in bar:
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = set_lr(run.optimizer, lr_at(c, run.progress(), epoch))
        loss, logits = train_step(run.model, x, y, run.optimizer, scaler=run.scaler, amp_dtype=run.amp_dtype,
                                  aux_weight=c.aux_weight, label_smoothing=c.label_smoothing)
        if run.average is not None and c.average == "ema":
            run.average.update()
        run.step, batches, images = run.step + 1, batches + 1, images + len(y)
        window = window + batch_totals(loss, logits, y)
        if run.step % c.log_every == 0:  # the only place the loop waits for the device
            loss_w, acc_w, speed = log_window(run, window, images / (time.perf_counter() - start), lr)
            bar.set_postfix(loss=f"{loss_w:.3f}", acc=f"{acc_w:.1%}", img_s=f"{speed:.0f}")
            totals, window = totals + window, torch.zeros_like(window)
        if run.out_of_time():
            break
    bar.close()
    totals = all_reduce(totals + window)
    seconds = time.perf_counter() - start
    run.train_time, run.epoch_start = run.train_time + seconds, None
    return {"train_loss": (totals[0] / totals[2]).item(), "train_acc": (totals[1] / totals[2]).item(),
            "lr": lr, "train_time_s": seconds, "images": int(totals[2]),
            "images_per_s": int(totals[2]) / seconds, "complete": batches == len(loader),
            "at_epoch": run.step / len(loader)}


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says; save checkpoint.pt and metrics.json in its out_dir; return the history."""
    run = Run(config)
    try:
        for epoch in range(run.epoch, config.epochs):
            if run.stopped_early:
                break
            record = {"epoch": epoch + 1, **train_one_epoch(run, epoch)}
            if run.average is not None and config.average == "polyak":
                run.average.update()
            test = evaluate(run.eval_model, run.test_loader, len(run.data.classes), amp_dtype=run.amp_dtype,
                            channels_last=config.channels_last)
            record.update(test_loss=test["loss"], test_acc=test["accuracy"])
            run.finish_epoch(record)
            run.say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.2%} "
                    f"| test loss {test['loss']:.4f} acc {test['accuracy']:.2%} "
                    f"| {record['images_per_s']:.0f} img/s")
        return run.history
    finally:
        run.close()


# --------------------------------------------------------------------------- schedule
def lr_at(config: TrainConfig, progress: float, epoch: int) -> float:
    """Learning rate when a fraction ``progress`` (0..1) of training is done, during ``epoch`` (0-based)."""
    c = config
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "step":  # the paper: cut by 4% every 8 epochs
        return c.lr * c.step_gamma ** (epoch // c.step_every)
    warmup = c.warmup if c.schedule == "onecycle" else 0.0
    if progress < warmup:  # linear warm-up from lr / 25
        return c.lr * (1 + (MAX_LR_DIVISOR - 1) * progress / warmup) / MAX_LR_DIVISOR
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return c.lr * 0.5 * (1 + math.cos(math.pi * t))  # cosine annealing to zero


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate (the schedule is a plain function of progress)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


# --------------------------------------------------------------------------- pieces
class WeightAverage:
    """A running average of a model's weights and buffers: EMA (``decay``) or uniform (``decay=None``).

    EMA uses ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates so that early on the
    average is not dominated by the random initial weights. Integer buffers are copied.
    """

    def __init__(self, source: nn.Module, decay: float | None) -> None:
        self.source, self.decay, self.updates = source, decay, 0
        self.module = copy.deepcopy(source).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        n = self.updates
        weight = 1 / n if self.decay is None else 1 - min(self.decay, (1 + n) / (10 + n))
        ours, theirs = self.module.state_dict(), self.source.state_dict()
        for name, avg in ours.items():
            if avg.is_floating_point():
                avg.lerp_(theirs[name], weight)
            else:
                avg.copy_(theirs[name])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = state["updates"]


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA GPU, else Apple's MPS, else the CPU; anything else as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """One line naming the device, for the start of a run's output."""
    if device.type == "cuda":
        return f"device: {device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"device: cpu ({torch.get_num_threads()} threads; no CUDA or MPS GPU in use)"
    return f"device: {device}"


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp``: auto means bf16 where supported, else fp16 (with a scaler)."""
    if amp == "none":
        return None
    if amp == "auto":
        fp16 = device.type == "mps" or (device.type == "cuda" and not torch.cuda.is_bf16_supported())
        amp = "fp16" if fp16 else "bf16"
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def model_kwargs(config: TrainConfig, data: Data) -> dict[str, Any]:
    """GoogLeNet's constructor arguments for this config and dataset (stored in every checkpoint)."""
    stem = config.stem if config.stem != "auto" else ("small" if data.image_size < 100 else "imagenet")
    return {"num_classes": len(data.classes), "variant": config.variant, "aux_logits": config.aux_logits,
            "in_channels": data.in_channels, "stem": stem, "dropout": config.dropout}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW; weight decay spares biases and batch-norm weights."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def all_reduce(t: Tensor) -> Tensor:
    """Sum ``t`` over distributed processes (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def batch_totals(loss: Tensor, logits: Tensor, y: Tensor) -> Tensor:
    """(summed loss, correct predictions, images) of one batch, kept on the device."""
    n = len(y)
    correct = (logits.argmax(1) == y).sum()
    return torch.stack([loss.double() * n, correct.double(), loss.new_tensor(n).double()])


def log_window(run: Run, window: Tensor, speed: float, lr: float) -> tuple[float, float, float]:
    """Record the last few steps' mean loss and accuracy in the step history."""
    loss, correct, n = window.tolist()
    entry = {"step": run.step, "epoch": run.step / len(run.train_loader), "loss": loss / n,
             "acc": correct / n, "lr": lr, "images_per_s": speed}
    run.history["steps"].append(entry)
    return entry["loss"], entry["acc"], speed


class Run:
    """The state of one training run: setup, resume, time keeping and saving (the loop is above)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = c = config
        self.rank, self.world_size, local_rank = _init_distributed()
        self.device = pick_device(c.device, local_rank)
        self.amp_dtype = resolve_amp(c.amp, self.device)
        processes = f", {self.world_size} processes" if self.world_size > 1 else ""
        self.say(describe_device(self.device) + processes)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(c.seed)
        if self.rank > 0:
            dist.barrier()  # rank 0 downloads (if asked) before the others read
        self.data = load_data(c.dataset, c.data_root, download=c.download, image_size=c.image_size,
                              subset=c.subset)
        if self.rank == 0 and self.world_size > 1:
            dist.barrier()
        shard = {"seed": c.seed, "rank": self.rank, "world_size": self.world_size, "workers": c.workers,
                 "on_device": c.on_device}
        self.train_loader = make_loader(self.data, "train", c.batch_size, self.device, augment=c.augment,
                                        **shard)
        self.test_loader = make_loader(self.data, "test", 2 * c.batch_size, self.device, **shard)
        self.model_kwargs = model_kwargs(c, self.data)
        self.net = GoogLeNet(**self.model_kwargs).to(self.device)
        if c.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.net, c)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        decay = c.ema_decay if c.average == "ema" else None
        self.average = WeightAverage(self.net, decay) if c.average != "none" else None
        self.epoch, self.step, self.train_time, self.stopped_early = 0, 0, 0.0, False
        self.epoch_start: float | None = None  # set while an epoch is training: the clock is running
        self.time_used = 0.0  # share of the time limit spent so far
        self.history = self._new_history()
        if c.resume:
            self._resume()
        self.model: nn.Module = self.net
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        if c.compile:
            self.model = torch.compile(self.model)

    @property
    def eval_model(self) -> nn.Module:
        return self.average.module if self.average is not None else self.net

    def say(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    def progress(self) -> float:
        """Fraction of training done: by steps or, with a time limit, by the clock (whichever is ahead)."""
        by_steps = self.step / (self.config.epochs * len(self.train_loader))
        return min(1.0, max(by_steps, self.time_used))

    def train_time_now(self) -> float:
        return self.train_time + (time.perf_counter() - self.epoch_start if self.epoch_start else 0.0)

    def out_of_time(self) -> bool:
        """Update the share of the time limit used; True once it is all spent.

        Rank 0's clock decides, so every process follows the same schedule and stops together.
        """
        if self.config.time_limit is None:
            return False
        used = torch.tensor(self.train_time_now() / self.config.time_limit, device=self.device)
        if self.world_size > 1:
            dist.broadcast(used, 0)
        self.time_used = used.item()
        self.stopped_early = self.time_used >= 1
        return self.stopped_early

    def _new_history(self) -> dict[str, Any]:
        d = self.data
        return {"config": asdict(self.config), "dataset": d.name, "classes": d.classes,
                "model_kwargs": self.model_kwargs, "device": str(self.device), "world_size": self.world_size,
                "amp": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "none",
                "epochs": [], "steps": [], "train_time_s": 0.0, "stopped_early": False,
                "test_acc": None, "test_loss": None}

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """Append the epoch to the history and save the checkpoint and metrics (rank 0 only)."""
        self.epoch = record["epoch"]
        self.history["epochs"].append(record)
        self.history.update(train_time_s=self.train_time, stopped_early=self.stopped_early,
                            test_acc=record["test_acc"], test_loss=record["test_loss"])
        if self.rank != 0:
            return
        d = self.data
        state = {
            "model_kwargs": self.model_kwargs, "classes": d.classes, "mean": list(d.mean), "std": list(d.std),
            "dataset": d.name, "image_size": d.image_size, "resize": d.resize,
            "epoch": self.epoch, "step": self.step, "train_time": self.train_time,
            "stopped_early": self.stopped_early, "model": self.net.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(), "history": self.history,
        }
        save_checkpoint(state, self.config.run_dir / "checkpoint.pt")
        _write_json(self.history, self.config.run_dir / "metrics.json")

    def _resume(self) -> None:
        path = self.config.run_dir / "checkpoint.pt"
        if not path.is_file():
            self.say(f"no checkpoint at {path} to resume from: starting from scratch")
            return
        state = read_checkpoint(path)
        if state["model_kwargs"] != self.model_kwargs or state["dataset"] != self.data.name:
            raise ValueError(
                f"{path} was trained on {state['dataset']} with GoogLeNet({state['model_kwargs']}); this "
                f"run asks for {self.data.name} with GoogLeNet({self.model_kwargs}). Use another --out-dir "
                "or drop --resume."
            )
        check_state_dict(self.net, state["model"], what=f"checkpoint {path}")
        self.net.load_state_dict(state["model"])
        if self.average is not None and state["average"] is not None:
            self.average.load_state_dict(state["average"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.step, self.train_time = state["epoch"], state["step"], state["train_time"]
        self.stopped_early, self.history = state["stopped_early"], state["history"]
        self.time_used = self.train_time / self.config.time_limit if self.config.time_limit else 0.0
        self.history["config"] = asdict(self.config)
        self.say(f"resumed from {path} after epoch {self.epoch}")

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size, local_rank


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- presets
def has_fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 autocast pays off here: CUDA with bf16 support, or a CPU with native bf16
    instructions (AVX512-BF16 or AMX; elsewhere oneDNN emulates bf16, slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


QUICK_CPU_SECONDS = 170


def fashion_mnist_config(device: str = "auto", *, verbose: bool = True, **overrides: Any) -> TrainConfig:
    """The book's Fashion-MNIST run: a quick setting on a CPU, the full one on a GPU; prints which and why.

    CPU: at most 2 epochs and :data:`QUICK_CPU_SECONDS` of training (the one-cycle schedule runs on
    the clock, so it always finishes its annealing), channels_last, bf16 where the CPU has it.
    GPU: 30 epochs with mixed precision and an EMA of the weights.
    """
    dev = pick_device(device)
    common = {"dataset": "fashion_mnist", "channels_last": True, "device": str(dev)}
    if dev.type == "cpu":
        bf16 = has_fast_bf16(dev)
        config = TrainConfig(**common, epochs=2, time_limit=QUICK_CPU_SECONDS, amp="bf16" if bf16 else "none")
        why = (f"No GPU: quick CPU setting, at most {config.epochs} epochs and {QUICK_CPU_SECONDS} s of "
               f"training{' in bf16' if bf16 else ''}; a GPU runs the full 30 epochs.")
    else:
        config = TrainConfig(**common, epochs=30, batch_size=256, lr=0.2, amp="auto", average="ema")
        why = f"GPU found ({dev.type}): full setting, {config.epochs} epochs with mixed precision and EMA."
    if verbose:
        print(why)
    return replace(config, **overrides)


# --------------------------------------------------------------------------- command line
EXAMPLES = """examples:
  python -m googlenet.train --dataset fashion_mnist --epochs 2
  python -m googlenet.train --dataset cifar10 --epochs 30 --amp --channels-last --out-dir runs/cifar10
  python -m googlenet.train --dataset folder --data-root my_images --image-size 128 --epochs 20
  python -m googlenet.train --recipe paper --dataset imagenette --epochs 60
  python -m googlenet.train --out-dir runs/cifar10 --dataset cifar10 --epochs 30 --resume
  torchrun --nproc_per_node=4 -m googlenet.train --dataset cifar10 --epochs 30 --amp
"""


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per :class:`TrainConfig` field."""
    parser = argparse.ArgumentParser(
        prog="python -m googlenet.train", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train GoogLeNet (Inception-v1) on Fashion-MNIST, CIFAR-10, Imagenette or your own\n"
                    "folder of images. Progress bars show loss, accuracy and speed; every epoch saves\n"
                    "checkpoint.pt and metrics.json in --out-dir (--resume continues from them).\n"
                    "Then `python -m googlenet.evaluate --checkpoint OUT_DIR/checkpoint.pt` measures it\n"
                    "and `python -m googlenet.predict IMAGE --checkpoint OUT_DIR/checkpoint.pt` classifies.",
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # `int | None` -> int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if f.default is not None:  # a None default is described in the help itself
            help += " (default: %(default)s)"
        kw: dict[str, Any] = {"default": f.default, "help": help}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = kind
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if "const" in f.metadata:
                kw.update(nargs="?", const=f.metadata["const"])
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The ``python -m googlenet.train`` command line: parse flags (recipe first), then :func:`train`."""
    parser = build_parser()
    recipe = parser.parse_known_args(argv)[0].recipe
    parser.set_defaults(**RECIPES[recipe])
    return train(TrainConfig(**vars(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
