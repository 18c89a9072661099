"""The Colab set-up cell that opens every chapter: one source, written into each notebook.

Run ``python book/colab.py`` after adding a chapter; tests/test_book.py checks every chapter's
first cell equals :func:`cell_source`. The repository URL comes from ``_config.yml`` only.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Colab only:"


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def cell_source() -> str:
    return f'''{MARKER} install this book's package (Colab already has PyTorch). Elsewhere, does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{repository_url()}"], check=True)'''


def chapters() -> list[Path]:
    return sorted(p for p in (ROOT / "book").glob("*.ipynb"))


def sync(path: Path) -> bool:
    """Make the notebook's first cell the Colab cell; True if the file changed."""
    nb = json.loads(path.read_text())
    cell = {"cell_type": "code", "execution_count": None, "metadata": {"tags": ["colab-setup"]},
            "outputs": [], "source": cell_source().splitlines(keepends=True)}
    cells = nb["cells"]
    if cells and "".join(cells[0].get("source", "")).startswith(MARKER):
        if cells[0]["source"] == cell["source"]:
            return False
        cells[0]["source"] = cell["source"]
    else:
        cells.insert(0, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":
    for p in chapters():
        if sync(p):
            print(f"updated {p.relative_to(ROOT)}")
