"""The set-up cell that opens every chapter: one source, written into each notebook.

In a clone of the repository (the notebook's folder holds ``booktools.py``) the cell does nothing. In
Colab, or for a chapter downloaded alone and opened in any Jupyter, it makes the runtime look like a
clone: it fetches the repository (shallow, at the book's branch) into ``~/googlenet-book``, installs the
package from it in editable mode with the book's extras, and changes into its ``book/`` folder, so the
chapter finds ``booktools``, the committed results (``results/``) and its own runs (``_runs/``) as it
does in a clone. Running it again reuses the clone.

Installing never replaces the runtime's PyTorch: pip is asked for this package *and* for the torch and
torchvision already installed, at their exact versions; pyproject's ranges admit Colab's releases, so pip
installs only what is missing (torchinfo), and if they ever did not, pip would stop with a conflict
instead of swapping the runtime's CUDA build for another.

The repository's URL and branch come from ``_config.yml`` only (``repository.url``, ``repository.branch``);
the environment variable ``GOOGLENET_BOOK_REPO``, when set, overrides the URL (for forks, and for
tests/test_colab.py, which runs the cell offline against a local clone).

Run ``python book/colab.py`` after adding a chapter or editing this file; tests/test_book.py checks every
chapter's first cell equals :func:`cell_source` and carries :data:`TAGS`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Set-up:"
# colab-setup names the cell; remove-cell hides it (input and output) in the HTML book, where it still runs.
TAGS = ["colab-setup", "remove-cell"]
REPO_VARIABLE = "GOOGLENET_BOOK_REPO"
CLONE_NAME = "googlenet-book"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def repository() -> tuple[str, str]:
    """The book's repository URL and branch, from ``_config.yml``."""
    config = _config()["repository"]
    return config["url"], config["branch"]


def repository_url() -> str:
    """The book's repository URL, from ``_config.yml``."""
    return repository()[0]


def cell_source() -> str:
    """The text of the Colab set-up cell."""
    url, branch = repository()
    return f'''{MARKER} in Colab or a chapter downloaded alone, fetch the book; in a clone, nothing.
import sys
from pathlib import Path

if "google.colab" in sys.modules or not Path("booktools.py").is_file():
    import os
    import subprocess
    from importlib import metadata

    def setup_step(what, command, advice):
        \"\"\"Run one set-up command; if it fails, say what failed and what to do.\"\"\"
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as err:
            output = (getattr(err, "stderr", "") or str(err)).strip().splitlines()
            message = [f"{{what}} failed: {{advice}}", *output[-5:]]
            raise RuntimeError("\\n".join(message)) from None

    REPO = os.environ.get("{REPO_VARIABLE}",
                          "{url}")
    CLONE = Path.home() / "{CLONE_NAME}"
    if not (CLONE / ".git").is_dir():
        setup_step(f"Fetching {{REPO}} (branch {branch})",
                   ["git", "clone", "-q", "--depth=1", "-b", "{branch}", REPO, str(CLONE)],
                   "check the runtime's internet connection; for a fork, set "
                   "{REPO_VARIABLE} to its URL.")
    # The runtime's torch and torchvision at their exact versions: pip keeps them
    # or stops. The package comes with the extras the chapters import ([book]).
    KEEP = [f"{{name}}=={{metadata.version(name)}}" for name in ("torch", "torchvision")]
    setup_step("Installing the googlenet package",
               [sys.executable, "-m", "pip", "install", "-q", "-e", f"{{CLONE}}[book]",
                *KEEP],
               "read pip's last lines below and the README's Troubleshooting section.")
    sys.path[:0] = [p for p in (str(CLONE), str(CLONE / "book")) if p not in sys.path]
    os.chdir(CLONE / "book")
    print(f"Working in {{CLONE / 'book'}}, a clone of {{REPO}} ({branch}).")'''


def colab_url(chapter: Path) -> str:
    """Where Colab opens a chapter from the repository (the book's launch button's address)."""
    url, branch = repository()
    github = url.removeprefix("https://github.com/").removesuffix(".git")
    return f"{_config()['launch_buttons']['colab_url']}/github/{github}/blob/{branch}/book/{chapter.name}"


def chapters() -> list[Path]:
    """The book's chapters, in order."""
    return sorted(p for p in (ROOT / "book").glob("*.ipynb"))


def sync(path: Path) -> bool:
    """Make the notebook's first cell the Colab cell; True if the file changed."""
    nb = json.loads(path.read_text())
    source = cell_source().splitlines(keepends=True)
    cells = nb["cells"]
    if cells and "".join(cells[0].get("source", "")).startswith(MARKER):
        first = cells[0]
        if first["source"] == source and first["metadata"].get("tags") == TAGS:
            return False
        first["source"] = source
        first["metadata"]["tags"] = list(TAGS)
    else:
        cells.insert(0, {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(TAGS)},
                         "outputs": [], "source": source})
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":
    for p in chapters():
        if sync(p):
            print(f"updated {p.relative_to(ROOT)}")
