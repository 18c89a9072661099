"""Where and how a run computes: device choice, mixed precision, processes and their seeds.

Every question about the hardware has its answer here and nowhere else: which device ``auto``
means, whether bf16 pays off, which autocast dtype ``--amp auto`` picks, how much memory a
computation took at its peak, how a ``torchrun`` process joins its group, and which seed each
process uses.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
from pathlib import Path

import torch
import torch.distributed as dist

AMP = ("none", "auto", "bf16", "fp16")


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA GPU, else Apple's MPS, else the CPU; anything else as given."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:1, mps or auto") from e
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


def cpuinfo() -> str:
    """Linux's /proc/cpuinfo ('' where there is no such file)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name, for the record of where a number was measured."""
    lines = cpuinfo().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 autocast pays off here: CUDA with bf16 support, or a CPU with native bf16
    instructions (AVX512-BF16 or AMX; elsewhere oneDNN emulates bf16, slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        flags = cpuinfo()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp``; ``auto`` is bf16 where :func:`fast_bf16`, fp16 on a GPU
    without it (with a gradient scaler), and full precision on a CPU without native bf16."""
    if amp not in AMP:
        raise ValueError(f"amp must be one of {AMP}, got {amp!r}")
    if amp == "auto":
        amp = "bf16" if fast_bf16(device) else "fp16" if device.type in ("cuda", "mps") else "none"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def reset_peak_memory(device: str) -> None:
    """Start a new peak: CUDA's allocator statistics, or Linux's VmHWM (via /proc/self/clear_refs)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: str) -> float:
    """Peak since the last reset: CUDA max allocated, else the process's peak resident set (RSS).

    Where VmHWM is unavailable, falls back to getrusage's lifetime peak (it cannot be reset).
    """
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size, local_rank


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one process's randomness (dropout, augmentation): different on every rank.

    Weights are initialised from ``seed`` itself, so every rank starts from the same model.
    """
    return seed + rank


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over distributed processes (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t
