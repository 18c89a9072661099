"""The set-up cell, run as Colab runs it and as a plain Jupyter runs a chapter downloaded alone, offline.

A throwaway environment plays the runtime: it has torch, torchvision and the other libraries (this
environment's site-packages, put on its path without running their ``.pth`` files, so the editable
install of this package stays invisible) but not the ``googlenet`` package; for Colab, a stand-in
``google.colab`` module is imported at start-up, as in a Colab kernel. ``GOOGLENET_BOOK_REPO`` points at
a local clone of this repository, so the cell's ``git clone`` and ``pip install`` need no network. The
clone holds what is *committed*: uncommitted edits are not part of the test.

A chapter is copied alone into an empty folder and cut down to the cells that matter here (executing all
of chapter 11 takes minutes): the set-up cell, run twice, the chapter's import cell and its cells that
read committed results (``Path("results")``), then a probe that reports where the package was imported
from.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import colab  # noqa: E402  (book/colab.py: the one source of the Colab cell)

CHAPTER = ROOT / "book" / "11_performance.ipynb"
PROBE = """import json, os, sys
import googlenet
references = {{name: str(googlenet.reference_checkpoint(name)) for name in {names!r}}}
print(json.dumps({{"executable": sys.executable, "cwd": os.getcwd(), "package": googlenet.__file__,
                  "references": references}}))"""


def _git(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source.splitlines(keepends=True)}


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What GitHub serves: a clone of this repository's committed state, at the book's branch."""
    origin = tmp_path_factory.mktemp("github") / "googlenet-book"
    _git("clone", "--quiet", ROOT, origin)
    _git("checkout", "--quiet", "-B", colab.repository()[1], cwd=origin)
    return origin


@pytest.fixture(scope="module")
def colab_runtime(tmp_path_factory: pytest.TempPathFactory, origin: Path) -> tuple[Path, dict[str, str]]:
    """A Python with this environment's libraries but not this package, and a Colab kernel's environment."""
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    libraries = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    # Directories named in a .pth file go on sys.path, but *their* .pth files are not run.
    (Path(site) / "libraries.pth").write_text("".join(f"{path}\n" for path in libraries))
    fake = tmp / "fake_colab"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s own module."""\n')
    (fake / "sitecustomize.py").write_text("import google.colab  # as a Colab kernel has it\n")
    (tmp / "home").mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    # Offline: no package index, and the editable build uses this environment's setuptools
    # (pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation).
    env.update(PYTHONPATH=str(fake), HOME=str(tmp / "home"), GOOGLENET_BOOK_REPO=origin.as_uri(),
               PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return python, env


def _execute(python: Path, env: dict[str, str], notebook: Path) -> list[str]:
    """Run a notebook in its folder as the runtime's Jupyter would; return each output's text."""
    done = subprocess.run([python, "-m", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=300", "--output", "executed.ipynb", notebook.name],
                          cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads((notebook.parent / "executed.ipynb").read_text())["cells"]
    return ["".join(out.get("text", "")) for cell in cells for out in cell["outputs"]]


@pytest.fixture(scope="module")
def plain_runtime(colab_runtime) -> tuple[Path, dict[str, str]]:
    """The same Python and environment without Colab's module: a Jupyter on a reader's computer."""
    python, env = colab_runtime
    return python, {k: v for k, v in env.items() if k != "PYTHONPATH"}


def _imports(chapter: Path) -> str:
    """Every import statement of a chapter's code cells, in order."""
    cells = json.loads(chapter.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"][1:]
    return "\n".join(ast.unparse(node) for source in sources for node in ast.walk(ast.parse(source))
                     if isinstance(node, ast.Import | ast.ImportFrom))


def test_the_runtime_has_the_libraries_and_colab_but_not_this_package(colab_runtime, tmp_path):
    python, env = colab_runtime
    check = ("import importlib.util, sys, torch, torchvision\n"
             "assert 'google.colab' in sys.modules\n"
             "assert importlib.util.find_spec('googlenet') is None, 'googlenet is importable'")
    done = subprocess.run([python, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _colab_notebook(references: list[str]) -> dict:
    """Chapter 11 cut down: the set-up cell twice, the imports, the cells that read results/, a probe."""
    nb = json.loads(CHAPTER.read_text())
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"
            and not "".join(cell["source"]).startswith(colab.MARKER)]
    reads_results = [cell for cell in code if 'Path("results")' in "".join(cell["source"])]
    assert reads_results, f"{CHAPTER.name} no longer reads results/: pick another chapter"
    setup = [_code(colab.cell_source()) for _ in range(2)]
    nb["cells"] = [*setup, code[0], *reads_results, _code(PROBE.format(names=references))]
    for cell in nb["cells"]:
        cell.pop("id", None)
        cell.update(outputs=[], execution_count=None)
    nb["nbformat_minor"] = 4  # no cell ids needed
    return nb


@pytest.mark.notebooks
def test_a_chapter_runs_in_colab_against_a_clone_of_the_repository(colab_runtime, origin, tmp_path):
    python, env = colab_runtime
    workdir = tmp_path / "content"  # Colab's working folder: the notebook, alone
    workdir.mkdir()
    committed = [Path(f) for f in _git("ls-files", "book/results", cwd=origin).split()]
    references = sorted(f.parent.name for f in committed if f.name == "model.pt")
    (workdir / CHAPTER.name).write_text(json.dumps(_colab_notebook(references), indent=1))
    text = _execute(python, env, workdir / CHAPTER.name)
    probe = json.loads(text[-1])
    clone = Path(env["HOME"]) / colab.CLONE_NAME
    assert probe["executable"] == str(python)
    assert probe["cwd"] == str(clone / "book")
    assert Path(probe["package"]).is_relative_to(clone), probe["package"]
    assert sum("Working in" in t for t in text) == 2, "the set-up cell ran twice"
    benchmarks = [f.name for f in committed if f.parent.name == "results" and f.match("[cg]pu*.json")]
    assert benchmarks and all(f"{name}:" in "".join(text) for name in benchmarks), "results/ not found"
    assert all(Path(path).is_relative_to(clone) for path in probe["references"].values())


@pytest.mark.notebooks
def test_every_chapters_imports_work_in_a_chapter_downloaded_alone(plain_runtime, tmp_path):
    """Outside Colab and outside a clone, the set-up cell fetches the book; then every import resolves."""
    python, env = plain_runtime
    workdir = tmp_path / "Downloads"
    workdir.mkdir()
    cells = [_code(colab.cell_source()), _code(colab.cell_source()),
             *[_code(_imports(chapter)) for chapter in colab.chapters()],
             _code(PROBE.format(names=["fashion_mnist_small"]))]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    (workdir / "alone.ipynb").write_text(json.dumps(nb, indent=1))
    text = _execute(python, env, workdir / "alone.ipynb")
    probe = json.loads(text[-1])
    clone = Path(env["HOME"]) / colab.CLONE_NAME
    assert probe["cwd"] == str(clone / "book") and Path(probe["package"]).is_relative_to(clone)
    assert sum("Working in" in t for t in text) == 1, "in the clone, the second run does nothing"


def test_in_a_clone_the_cell_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(ROOT / "book")
    namespace: dict = {}
    exec(colab.cell_source(), namespace)
    assert Path.cwd() == ROOT / "book" and set(namespace) == {"__builtins__", "sys", "Path"}


def test_a_failed_clone_says_what_failed_and_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(colab.REPO_VARIABLE, (tmp_path / "no-such-repository").as_uri())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="Fetching .* failed: check the runtime's internet connection"):
        exec(colab.cell_source(), {})
    assert Path.cwd() == tmp_path
