"""The package's layout: imports go one way, from the model up to the command lines."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import googlenet

PACKAGE = Path(googlenet.__file__).parent
# Each module may import only from modules in earlier layers.
LAYERS = [
    ["architecture", "errors"],
    ["model"],
    ["device"],
    ["hooks", "files"],
    ["compat", "table", "receptive", "features", "optimize", "checkpoint", "data", "metrics", "plots"],
    ["loaders", "weights", "attribution", "visualize"],
    ["config", "provenance", "ood"],
    ["engine"],
    ["cli"],
    ["train", "evaluate", "predict", "bench", "microscope"],
]


def _layer(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _imports(path: Path) -> set[str]:
    """The package modules that ``path`` imports with ``from .x import`` (or ``from . import x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found - {"__init__"}


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == {m for layer in LAYERS for m in layer}


def test_imports_go_one_way():
    wrong = [
        f"{path.stem} imports {other}"
        for path in PACKAGE.glob("*.py") if path.stem != "__init__"
        for other in _imports(path)
        if other != "__version__" and _layer(other) >= _layer(path.stem)
    ]
    assert not wrong, wrong


def test_the_standard_librarys_inspect_is_not_shadowed():
    assert not (PACKAGE / "inspect.py").exists()


def test_no_merge_conflict_markers_in_tracked_text_files():
    """A marker inside a string or a notebook is invisible to ruff and Python: this finds them all."""
    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    # at a line's start, or at a notebook source line's (a JSON string): `<<<<<<< HEAD`, `=======`...
    marker = re.compile(rb'^\s*"?(<{7}|>{7}|={7}|\|{7})( |\\n|"|$)', re.MULTILINE)
    found = []
    for name in filter(None, files.decode().split("\0")):
        data = (root / name).read_bytes() if (root / name).is_file() else b""
        if b"\0" not in data[:8192] and marker.search(data):
            found.append(name)
    assert not found, found
