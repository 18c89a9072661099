"""Where and how a run computes: device choice, mixed precision, processes and their seeds.

Every question about the hardware has its answer here and nowhere else: which device ``auto``
means, whether bf16 pays off, which autocast dtype ``--amp auto`` picks, how much memory a
computation took at its peak, how a ``torchrun`` process joins its group, and which seed each
process uses.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import ConfigError

AMP = ("none", "auto", "bf16", "fp16")


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA GPU, else Apple's MPS, else the CPU; anything else as given.

    A device that this machine lacks (``cuda`` without a CUDA GPU, ``mps`` off a Mac) raises a
    ConfigError that says so, before any work starts.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:1, mps or auto") from e
    check_available(device)
    return device


def check_available(device: str | torch.device) -> None:
    """Raise a :class:`~googlenet.errors.ConfigError` if ``device`` does not exist on this machine."""
    device = torch.device(device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device}: this machine has no CUDA GPU that PyTorch can use "
                             "(torch.cuda.is_available() is False); use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {device}: this machine has {count} CUDA GPU(s), cuda:0 to "
                             f"cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device}: Apple's MPS is not available here (it needs a Mac with "
                         "Apple silicon or an AMD GPU); use --device cpu or auto")


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


# --------------------------------------------------------------------------- what the device decides
BF16_CAPABILITY = (8, 0)  # CUDA compute capability with bf16 tensor cores (Ampere: A100, L4, H100...)
FP16_CAPABILITY = (7, 0)  # fp16 tensor cores (Volta, Turing: V100, Colab's T4 at 7.5)
LARGE_BATCH_GIB = 12  # GPU memory from which the full Fashion-MNIST setting uses batch 256


@dataclass(frozen=True)
class DeviceFacts:
    """What the device decisions depend on, read from the hardware by :func:`device_facts`.

    Tests build these by hand to stand for machines they do not have (a T4, an H100, a Mac).
    """

    type: str  # "cpu", "cuda" or "mps"
    name: str
    cores: int  # CPU cores, which also feed a GPU
    capability: tuple[int, int] | None = None  # CUDA compute capability
    memory_gib: float | None = None  # GPU memory
    cpu_bf16: bool = False  # the CPU has native bf16 instructions and PyTorch's dispatch may use them


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX) and PyTorch may use it.

    PyTorch's view of the CPU counts: ``ATEN_CPU_CAPABILITY=avx2`` (or ``default``) turns it off,
    which is how the float32 path is tested on a machine that has bf16.
    """
    flags = cpuinfo().split()
    has = "avx512_bf16" in flags or "amx_bf16" in flags
    return has and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cpu_cores() -> int:
    """CPU cores this process may use (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def device_facts(device: str | torch.device) -> DeviceFacts:
    """Read the facts of ``device`` from this machine."""
    device = torch.device(device)
    cores = cpu_cores()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceFacts("cuda", props.name, cores, (props.major, props.minor), props.total_memory / 2**30)
    if device.type == "mps":
        return DeviceFacts("mps", "Apple MPS", cores)
    return DeviceFacts(device.type, cpu_name(), cores, cpu_bf16=device.type == "cpu" and native_cpu_bf16())


@dataclass(frozen=True)
class DevicePlan:
    """Every setting the package chooses from the device, each with the reason, for printing."""

    amp: str  # "bf16", "fp16" (with a gradient scaler) or "none"
    batch_size: int  # of the full Fashion-MNIST setting (the book's training chapters)
    workers: int  # loader processes for image files
    pin_memory: bool  # what the loaders do: :func:`pins_memory`
    reasons: dict[str, str]

    def lines(self) -> list[str]:
        """One line per decision: ``precision: bf16 (why)``."""
        values = {"precision": self.amp, "batch size": self.batch_size, "loader workers": self.workers,
                  "pinned memory": self.pin_memory}
        return [f"{k}: {v} ({self.reasons[k]})" for k, v in values.items()]


def precision(facts: DeviceFacts) -> tuple[str, str]:
    """(``"bf16"``, ``"fp16"`` or ``"none"``, why): the mixed precision that pays off on the device."""
    if facts.type == "cuda":
        cc = facts.capability or (0, 0)
        if cc >= BF16_CAPABILITY:
            return "bf16", f"compute capability {cc[0]}.{cc[1]} has bf16 tensor cores"
        if cc >= FP16_CAPABILITY:
            return "fp16", (f"compute capability {cc[0]}.{cc[1]}: fp16 tensor cores, no bf16 ones; "
                            "a gradient scaler keeps small gradients")
        return "none", f"compute capability {cc[0]}.{cc[1]} has no tensor cores"
    if facts.type == "mps":
        return "none", "autocast on Apple's MPS depends on the macOS version; float32 works everywhere"
    if facts.cpu_bf16:
        return "bf16", "the CPU has native bf16 instructions (AVX512-BF16 or AMX)"
    return "none", "no native bf16 on this CPU: emulated bf16 is slower than float32"


def plan_for(facts: DeviceFacts) -> DevicePlan:
    """What the package decides for a device described by ``facts``."""
    amp, why_amp = precision(facts)
    gpu = facts.type in ("cuda", "mps")
    large = facts.type == "cuda" and (facts.memory_gib or 0) >= LARGE_BATCH_GIB
    batch = 256 if large else 128
    workers = min(8, facts.cores) if gpu else min(4, facts.cores // 2)
    reasons = {
        "precision": why_amp,
        "batch size": (f"{facts.memory_gib:.0f} GiB of GPU memory" if facts.type == "cuda"
                       else "the CPU's or Mac's memory and speed"),
        "loader workers": (f"{facts.cores} CPU cores feed the GPU" if gpu
                           else f"half of {facts.cores} CPU cores; the rest train"),
        "pinned memory": "faster copies to a CUDA GPU" if facts.type == "cuda" else "only CUDA uses it",
    }
    return DevicePlan(amp, batch, workers, pins_memory(facts.type), reasons)


def pins_memory(device_type: str) -> bool:
    """Whether loaders pin their batches' memory: for copies to a CUDA GPU only."""
    return device_type == "cuda"


def device_plan(device: str | torch.device) -> DevicePlan:
    """:func:`plan_for` this machine's ``device``."""
    return plan_for(device_facts(device))


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 autocast pays off on ``device`` (see :func:`precision`)."""
    return precision(device_facts(device))[0] == "bf16"


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp``; ``auto`` is the device's :func:`precision`: bf16 where it is
    fast, fp16 on a GPU with fp16 tensor cores only (with a gradient scaler), else full precision."""
    if amp not in AMP:
        raise ConfigError(f"amp must be one of {AMP}, got {amp!r}")
    if amp == "auto":
        amp = precision(device_facts(device))[0]
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.mb`` is the most tensor memory the block
    held at once beyond what was allocated when it began, in MB (2**20 bytes).

    On CUDA it comes from the allocator's statistics; elsewhere from the profiler's record of every
    allocation and free. A process's resident memory cannot say it: the allocator keeps memory that
    earlier work freed, and the process holds everything else, so a resident-memory peak only grows.
    """

    def __init__(self, device: str | torch.device) -> None:
        self.device, self.mb = str(device), None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
            self._profiler.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._profiler.__exit__(*exc)
            # every allocation (+bytes) and free (-bytes) in time order; the peak of their running sum
            events = self._profiler.profiler.kineto_results.events()
            records = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
            peak = max(itertools.accumulate(n for _, n in records), default=0)
        self.mb = max(peak, 0) / 2**20


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


SEED_PURPOSES = ("weights", "shuffle", "augment", "dropout", "sample")


def seed_for(seed: int, purpose: str, epoch: int = 0, rank: int = 0, index: int = 0) -> int:
    """The seed of one use of randomness: a 63-bit hash of (seed, purpose, epoch, rank, index).

    Different keys get unrelated seeds (equal ones by a chance of 2**-63), so no stream repeats
    another (one epoch's augmentation is never the next epoch's shuffle). Which parts of the key a
    purpose uses is the caller's choice: ``"shuffle"`` (seed, epoch), shared by every rank;
    ``"augment"`` and ``"dropout"`` (seed, epoch, rank); ``"sample"`` (seed, epoch, rank, index),
    one image file's augmentation. ``"weights"`` is ``seed`` itself, so ``torch.manual_seed(seed)``
    then building the model gives the run's initial weights, the same on every rank.
    """
    if purpose not in SEED_PURPOSES:
        raise ValueError(f"purpose must be one of {SEED_PURPOSES}, got {purpose!r}")
    if purpose == "weights":
        return seed
    key = repr((seed, purpose, epoch, rank, index)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over distributed processes (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t
