"""The training loop: ``train(TrainConfig(...))`` trains, evaluates, saves and returns the history.

From Python::

    from googlenet import TrainConfig
    from googlenet.engine import train
    history = train(TrainConfig(dataset="fashion_mnist", epochs=2, out_dir="runs/fmnist"))

A run writes ``<out_dir>/checkpoint.pt`` after every epoch (``resume=True`` continues from it
exactly, on every process: each epoch seeds its dropout, shuffle and augmentation from the seed,
the epoch and the rank) and ``<out_dir>/metrics.json``: the history, with the command line,
machine, library versions, date and git commit of the latest start. A loss that becomes infinite
or NaN stops the run with :class:`NonFiniteLossError` before anything is saved.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from .architecture import AUX_LOSS_WEIGHT
from .checkpoint import CheckpointError, check_resumable, read_checkpoint, restore_training, save_checkpoint
from .config import TrainConfig, changed_fields, stem_for
from .data import Data, hold_out, load_data
from .device import (
    all_reduce,
    amp_dtype,
    describe_device,
    device_plan,
    init_distributed,
    pick_device,
    seed_for,
)
from .errors import ConfigError
from .files import write_json
from .loaders import make_loader
from .metrics import evaluate
from .model import GoogLeNet, GoogLeNetOutputs, googlenet_loss
from .provenance import provenance

MAX_LR_DIVISOR = 25  # one-cycle warm-up starts at lr / 25, as torch's OneCycleLR does


class NonFiniteLossError(RuntimeError):
    """The training loss became infinite or NaN: the run stops instead of training on garbage."""


# --------------------------------------------------------------------------- the loop
def train_step(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, *,
    scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
    aux_weight: float = AUX_LOSS_WEIGHT, label_smoothing: float = 0.0,
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
    torch.manual_seed(seed_for(c.seed, "dropout", epoch, run.rank))  # CPU and GPUs: resume saves no RNG state
    totals = window = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss sum, correct, images
    start = run.epoch_start = time.perf_counter()
    images = batches = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not (c.progress and run.rank == 0),
               leave=True, dynamic_ncols=True, file=sys.stdout)
    for x, y in bar:
        progress = run.progress()
        x = resize(x, size_at(c, progress))
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = set_lr(run.optimizer, lr_at(c, progress, epoch))
        loss, logits = train_step(run.model, x, y, run.optimizer, scaler=run.scaler, amp_dtype=run.amp_dtype,
                                  aux_weight=c.aux_weight, label_smoothing=c.label_smoothing)
        run.step, batches, images = run.step + 1, batches + 1, images + len(y)
        run.note_loss(loss)
        if run.average is not None and c.average == "ema":
            run.average.update_parameters(run.net)
        window = window + batch_totals(loss, logits, y)
        if run.step % c.log_every == 0:  # the only place the loop waits for the device
            run.check_loss()
            loss_w, acc_w, speed = log_window(run, window, images / (time.perf_counter() - start), lr)
            bar.set_postfix(loss=f"{loss_w:.3f}", acc=f"{acc_w:.1%}", img_s=f"{speed:.0f}")
            totals, window = totals + window, torch.zeros_like(window)
        if run.out_of_time():
            break
    bar.close()
    run.check_loss()
    if window[2] > 0:  # the steps since the last entry, so that even a slow, short run has a history
        log_window(run, window, images / (time.perf_counter() - start), lr)
    totals = all_reduce(totals + window)
    seconds = time.perf_counter() - start
    run.train_time, run.epoch_start = run.train_time + seconds, None
    return {"train_loss": (totals[0] / totals[2]).item(), "train_acc": (totals[1] / totals[2]).item(),
            "lr": lr, "train_time_s": seconds, "images": int(totals[2]),
            "images_per_s": int(totals[2]) / seconds, "complete": batches == len(loader),
            "at_epoch": run.step / len(loader)}


def train(config: TrainConfig, *, command: str | None = None) -> dict[str, Any]:
    """Train as ``config`` says; save checkpoint.pt and metrics.json in its out_dir; return the history.

    ``command`` is the command line that started the run, recorded in metrics.json.
    """
    run = Run(config, command)
    try:
        for epoch in range(run.epoch, config.epochs):
            if run.stopped_early:
                break
            record = {"epoch": epoch + 1, **train_one_epoch(run, epoch)}
            if run.average is not None and config.average == "polyak":
                run.average.update_parameters(run.net)
            # In float32 whatever the training precision: the accuracy a plain evaluation gives.
            test = evaluate(run.eval_model, run.test_loader, len(run.data.classes),
                            channels_last=config.channels_last, flip=config.tta)
            split = run.split  # "val" when tuning on a validation split, else "test"
            record.update({f"{split}_loss": test["loss"], f"{split}_acc": test["accuracy"]})
            run.finish_epoch(record)
            run.say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.2%} "
                    f"| {split} loss {test['loss']:.4f} acc {test['accuracy']:.2%} "
                    f"| {record['images_per_s']:.0f} img/s")
        if run.world_size > 1:  # leave together: with torch 2.6's gloo, a rank that tears its process
            dist.barrier()      # group down while rank 0 still writes the checkpoint hangs
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
    warmup = c.warmup if c.schedule in ("onecycle", "linear") else 0.0
    if progress < warmup:  # linear warm-up from lr / 25
        return c.lr * (1 + (MAX_LR_DIVISOR - 1) * progress / warmup) / MAX_LR_DIVISOR
    t = min(1.0, (progress - warmup) / (1 - warmup))
    if c.schedule == "linear":
        return c.lr * (1 - t)  # linear decay to zero
    return c.lr * 0.5 * (1 + math.cos(math.pi * t))  # cosine annealing to zero


def size_at(config: TrainConfig, progress: float) -> int | None:
    """Side of the training images when a fraction ``progress`` is done (progressive resizing), or None."""
    sizes = config.progressive_sizes
    return sizes[min(len(sizes) - 1, int(progress * len(sizes)))] if sizes else None


def resize(x: Tensor, size: int | None) -> Tensor:
    """A batch of images resized to ``size`` x ``size`` (bilinear, antialiased), or unchanged if None."""
    if size is None or size == x.shape[-1]:
        return x
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate (the schedule is a plain function of progress)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def lr_range_test(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer, *,
    lr_min: float = 1e-5, lr_max: float = 10.0, steps: int = 100, stop_factor: float = 4.0,
    smoothing: float = 0.9, **step_kwargs: Any,
) -> dict[str, list[float]]:
    """The learning-rate range test (Smith, 2017): one step per rate, the rate growing exponentially.

    Step ``i`` trains at ``lr_min * (lr_max / lr_min) ** (i / (steps - 1))`` and records the loss and its
    exponential average (``smoothing``, bias-corrected). It stops early once the average exceeds
    ``stop_factor`` times its lowest value or is not finite. ``batches`` (a loader) is read again when it
    runs out; ``step_kwargs`` go to :func:`train_step`. Model and optimizer train in place: pass fresh ones.
    """
    model.train()
    record: dict[str, list[float]] = {"lr": [], "loss": [], "smoothed": []}
    average, best, stream = 0.0, math.inf, _forever(batches)
    for i in range(steps):
        lr = set_lr(optimizer, lr_min * (lr_max / lr_min) ** (i / max(1, steps - 1)))
        x, y = next(stream)
        loss = train_step(model, x, y, optimizer, **step_kwargs)[0].item()
        average = smoothing * average + (1 - smoothing) * loss
        smoothed = average / (1 - smoothing ** (i + 1))
        for key, value in zip(record, (lr, loss, smoothed), strict=True):
            record[key].append(value)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
    return record


def _forever(batches: Iterable[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches again and again (a new epoch each time, for loaders with ``set_epoch``)."""
    for epoch in itertools.count():
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_range_test: the batches ran out (pass a loader or a list, not an iterator)")


# --------------------------------------------------------------------------- pieces
def ema_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor | int], None]:
    """An EMA update for AveragedModel whose decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))``.

    The warm-up (timm's) keeps a short run's average from staying near the first weights: with a
    fixed 0.999, the average of a 200-step run would still weigh its starting point 0.82.
    """
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor | int) -> None:
        n = int(num_averaged)
        weight = 1 - min(decay, (1 + n) / (10 + n))
        for avg, new in zip(averaged, current, strict=True):
            if avg.is_floating_point():
                avg.lerp_(new, weight)
            else:  # an integer buffer (batch norm's count), as torch's own EMA treats it
                avg.copy_(avg * (1 - weight) + new * weight)
    return update


def weight_average(model: nn.Module, kind: str, ema_decay: float) -> AveragedModel | None:
    """PyTorch's running average of ``model``'s weights and batch-norm buffers.

    ``"ema"``: exponential, ``avg = d * avg + (1 - d) * weights`` with the decay ``d`` warming up to
    ``ema_decay`` (:func:`ema_warmup`; the first update copies); ``"polyak"``: the uniform mean of
    every update; ``"none"``: no average.
    """
    if kind == "none":
        return None
    avg_fn = ema_warmup(ema_decay) if kind == "ema" else None
    return AveragedModel(model, multi_avg_fn=avg_fn, use_buffers=True).eval().requires_grad_(False)


def model_kwargs(config: TrainConfig, data: Data) -> dict[str, Any]:
    """GoogLeNet's constructor arguments for this config and dataset (stored in every checkpoint)."""
    stem = config.stem if config.stem != "auto" else stem_for(data.image_size)
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

    def __init__(self, config: TrainConfig, command: str | None = None) -> None:
        self.config = c = config
        self.rank, self.world_size, local_rank = init_distributed()
        self.device = pick_device(c.device, local_rank)
        self.amp_dtype = amp_dtype(c.amp, self.device)
        self.workers = c.workers if c.workers is not None else device_plan(self.device).workers
        processes = f", {self.world_size} processes" if self.world_size > 1 else ""
        self.say(describe_device(self.device) + processes)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.rank > 0:
            dist.barrier()  # rank 0 downloads (if asked) before the others read
        self.data = load_data(c.dataset, c.data_root, download=c.download, image_size=c.image_size,
                              subset=c.subset)
        self.split = "val" if c.val_split else "test"  # what the test loader reads: held out or the test set
        if c.val_split:
            self.data = hold_out(self.data, c.val_split)
        if self.rank == 0 and self.world_size > 1:
            dist.barrier()
        shard = {"seed": c.seed, "rank": self.rank, "world_size": self.world_size, "workers": self.workers,
                 "on_device": c.on_device}
        self.train_loader = make_loader(self.data, "train", c.batch_size, self.device, augment=c.augment,
                                        **shard)
        self.test_loader = make_loader(self.data, "test", 2 * c.batch_size, self.device, **shard)
        self.model_kwargs = model_kwargs(c, self.data)
        torch.manual_seed(seed_for(c.seed, "weights"))  # the same initial weights on every rank
        self.net = GoogLeNet(**self.model_kwargs).to(self.device)
        if c.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.net, c)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.average = weight_average(self.net, c.average, c.ema_decay)
        self.epoch, self.step, self.train_time, self.stopped_early = 0, 0, 0.0, False
        self.epoch_start: float | None = None  # set while an epoch is training: the clock is running
        self.time_used = 0.0  # share of the time limit spent so far
        self.first_bad_step = torch.tensor(-1, device=self.device)  # first step with a non-finite loss
        self.history = self._new_history()
        if c.resume:
            self._resume()
        self.history.update(provenance(command))
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

    def note_loss(self, loss: Tensor) -> None:
        """Remember the first step whose loss is not finite, without waiting for the device."""
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)

    def check_loss(self) -> None:
        """Raise :class:`NonFiniteLossError` if a step since the start had an infinite or NaN loss."""
        step = int(self.first_bad_step)
        if step >= 0:
            c = self.config
            fp16 = " or use --amp bf16 instead of fp16" if self.amp_dtype == torch.float16 else ""
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite at step {step} (lr {c.lr:g}, "
                f"batch size {c.batch_size}); training stopped without saving. Lower --lr{fp16}, "
                "then start again (the last checkpoint, if any, is from before)."
            )

    def progress(self) -> float:
        """Fraction of training done: by steps or, with a time limit, by the clock (whichever is ahead)."""
        by_steps = self.step / (self.config.epochs * len(self.train_loader))
        return min(1.0, max(by_steps, self.time_used))

    def train_time_now(self) -> float:
        running = time.perf_counter() - self.epoch_start if self.epoch_start is not None else 0.0
        return self.train_time + running

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
                f"{self.split}_acc": None, f"{self.split}_loss": None}

    def _meta(self) -> dict[str, Any]:
        d = self.data
        return {"model_kwargs": self.model_kwargs, "classes": d.classes, "mean": list(d.mean),
                "std": list(d.std), "dataset": d.name, "image_size": d.image_size, "resize": d.resize}

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """Append the epoch to the history and save the checkpoint and metrics (rank 0 only)."""
        self.epoch = record["epoch"]
        self.history["epochs"].append(record)
        self.history.update({"train_time_s": self.train_time, "stopped_early": self.stopped_early,
                             **{k: record[k] for k in (f"{self.split}_acc", f"{self.split}_loss")}})
        if self.rank != 0:
            return
        progress = {"epoch": self.epoch, "step": self.step, "train_time": self.train_time,
                    "stopped_early": self.stopped_early}
        save_checkpoint(self.config.run_dir / "checkpoint.pt", self._meta(), self.net, average=self.average,
                        optimizer=self.optimizer, scaler=self.scaler, progress=progress, history=self.history)
        write_json(self.history, self.config.run_dir / "metrics.json")

    def _resume(self) -> None:
        path = self.config.run_dir / "checkpoint.pt"
        if not path.is_file():
            self.say(f"no checkpoint at {path} to resume from: starting from scratch")
            return
        state = read_checkpoint(path)
        check_resumable(state, path)
        if state["model_kwargs"] != self.model_kwargs or state["dataset"] != self.data.name:
            raise CheckpointError(
                f"{path} was trained on {state['dataset']} with GoogLeNet({state['model_kwargs']}); this "
                f"run asks for {self.data.name} with GoogLeNet({self.model_kwargs}). Use another --out-dir "
                "or drop --resume."
            )
        changed = changed_fields((state.get("history") or {}).get("config", {}), self.config)
        if changed:
            raise ConfigError(
                f"cannot resume {path}: these settings differ from the saved run's ({'; '.join(changed)}). "
                "Resume with the saved settings, or use another --out-dir for a new run."
            )
        restore_training(state, self.net, average=self.average, optimizer=self.optimizer, scaler=self.scaler)
        self.epoch, self.step, self.train_time = state["epoch"], state["step"], state["train_time"]
        self.stopped_early, self.history = state["stopped_early"], state["history"]
        self.time_used = self.train_time / self.config.time_limit if self.config.time_limit else 0.0
        self.history["config"] = asdict(self.config)
        self.say(f"resumed from {path} after epoch {self.epoch}")

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()

