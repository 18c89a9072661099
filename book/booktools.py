"""The book's own helpers and policy, kept apart from the `googlenet` library.

Chapters import this module from their own folder (`import booktools`): the notebooks run with the
chapter's folder as the working directory, locally, in the book build, under nbval and in Colab.
"""

from typing import Any

import torchinfo
from torch import nn
from torchinfo.enums import Units

from googlenet import TrainConfig
from googlenet.device import fast_bf16, pick_device


class _ReadableSummary(torchinfo.ModelStatistics):
    """torchinfo's statistics, with unit labels printed as "(M)", not "(Units.MEGABYTES)"."""

    def __repr__(self) -> str:
        text = super().__repr__()
        for unit in Units:  # Python 3.11+ formats a str-Enum member by its name
            text = text.replace(f"({unit})", f"({unit.value})")
        return text


def summary(model: nn.Module, **kwargs) -> torchinfo.ModelStatistics:
    """`torchinfo.summary(model, **kwargs)`, whose printout labels millions (M) and billions (G)."""
    stats = torchinfo.summary(model, **kwargs)
    stats.__class__ = _ReadableSummary  # same data; only the printout differs
    return stats


# --------------------------------------------------------------------------- the training chapters' run
QUICK_CPU_SECONDS = 170  # the book's policy: a CPU reader waits about three minutes per training run


def fashion_mnist_config(device: str = "auto", *, verbose: bool = True, **overrides: Any) -> TrainConfig:
    """Chapters 8 and 9's Fashion-MNIST run: a quick setting on a CPU, the full one on a GPU; says which.

    CPU: at most 2 epochs and :data:`QUICK_CPU_SECONDS` of training (the one-cycle schedule runs on
    the clock, so it always finishes its annealing), channels_last, bf16 where the CPU has it.
    GPU: 30 epochs with mixed precision and an EMA of the weights.
    """
    dev = pick_device(device)
    settings = {"dataset": "fashion_mnist", "channels_last": True, "device": str(dev)}
    if dev.type == "cpu":
        bf16 = fast_bf16(dev)
        settings.update(epochs=2, time_limit=QUICK_CPU_SECONDS, amp="bf16" if bf16 else "none")
        why = (f"No GPU: quick CPU setting, at most 2 epochs and {QUICK_CPU_SECONDS} s of "
               f"training{' in bf16' if bf16 else ''}; a GPU runs the full 30 epochs.")
    else:
        settings.update(epochs=30, batch_size=256, lr=0.2, amp="auto", average="ema")
        why = f"GPU found ({dev.type}): full setting, 30 epochs with mixed precision and EMA."
    if verbose:
        print(why)
    return TrainConfig(**{**settings, **overrides})
