"""Files written whole or not at all: checkpoints, result JSON and unpacked datasets.

A crash mid-write leaves the previous file intact (or none), never a truncated one under the real
name: the bytes go to a temporary file in the same folder, are flushed to disk, then renamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (one space, a final newline), atomically."""
    text = json.dumps(obj, indent=1) + "\n"
    return write_atomically(path, lambda f: f.write(text.encode()))
