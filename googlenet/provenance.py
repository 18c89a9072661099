"""Where a result comes from: one record, the same in every file the package writes.

Training runs (``metrics.json``), the benchmark's JSON and the GPU report's files all carry
:func:`provenance`: the command line, the date (UTC), the git commit, the machine and the versions.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
import torchvision

from . import __version__
from .device import cpu_name, fast_bf16


def machine() -> dict[str, Any]:
    """The computer: platform, CPU, its cores and torch's threads, native bf16, and the GPU (or None)."""
    return {"platform": platform.platform(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "native_bf16": fast_bf16("cpu"),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def versions() -> dict[str, Any]:
    """Python's, the libraries' and the package's versions; CUDA's that torch was built with (or None)."""
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": torchvision.__version__, "googlenet": __version__, "cuda": torch.version.cuda}


def provenance(command: str | None) -> dict[str, Any]:
    """Where and how a result was made: command line, date (UTC), git commit, machine and versions."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"command": command, "date": now.isoformat(timespec="seconds"), "commit": git_commit(),
            "machine": machine(), "versions": versions()}


def git_commit() -> str | None:
    """The commit of the repository this package was imported from (None outside a git checkout)."""
    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    return None
