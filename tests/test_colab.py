"""Every chapter, run as a reader runs it: in a fresh Colab runtime, or downloaded alone, offline.

A throwaway runtime for each chapter: a Python with torch, torchvision and the other libraries (this
environment's site-packages, put on its path without running their ``.pth`` files, so the editable
install of this package stays invisible) but not the ``googlenet`` package; an empty home; the committed
notebook, unmodified, alone in an empty folder. For Colab a stand-in ``google.colab`` module is
imported at start-up, as in a Colab kernel. ``GOOGLENET_BOOK_REPO`` points at a local clone of this
repository, so the set-up cell's ``git clone`` and ``pip install`` need no network; the clone holds
what is *committed*: uncommitted edits are not part of the test. Debian's Fashion-MNIST is out of
reach (``GOOGLENET_FASHION_MNIST_COPY`` set empty), so the chapters fetch it with their own download
code, which ``http_proxy`` sends to a local server standing in for torchvision's mirror
(``tests/standin.py``; that runtime alone expects Debian's recompressed files' checksums).

nbval runs each chapter in that runtime's kernel, as the README's in-clone run does: every cell, a
stored output compared where a cell is tagged ``nbval-check-output``. The chapters run two at a time
under ``pytest -n 2`` (each on one thread with ``OMP_NUM_THREADS=1``).
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
import standin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import colab  # noqa: E402  (book/colab.py: the one source of the Colab cell)

KERNEL = "standin"
PROBE = """import json, os, sys
import googlenet
print(json.dumps({"executable": sys.executable, "cwd": os.getcwd(), "package": googlenet.__file__}))"""
# The chapters that load Fashion-MNIST, and so must have fetched it from the stand-in mirror.
DOWNLOADING = {"06_data", "07_training", "08_evaluation", "09_looking_inside", "10_make_it_yours"}
# The chapters whose code takes another path where the CPU lacks native bfloat16 (training under
# autocast, the speed table): they run on that float32 path, most laptops', on every CPU. The bf16
# path is the package's, tested by its unit tests.
FLOAT32 = {"07_training", "11_performance"}


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
def mirror():
    """The local stand-in for torchvision's Fashion-MNIST mirror."""
    with standin.FashionMirror() as server:
        yield server


def _runtime(tmp: Path, origin: Path, mirror: standin.FashionMirror, *, colab_module: bool
             ) -> tuple[Path, dict[str, str]]:
    """A fresh Python with this environment's libraries but not this package, its kernel, and the
    environment of a runtime with an empty home and no dataset on disk."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    libraries = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    # Directories named in a .pth file go on sys.path, but *their* .pth files are not run.
    (Path(site) / "libraries.pth").write_text("".join(f"{path}\n" for path in libraries))
    kernel = tmp / "jupyter" / "kernels" / KERNEL
    kernel.mkdir(parents=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "stand-in runtime", "language": "python"}
    (kernel / "kernel.json").write_text(json.dumps(spec))
    (tmp / "home").mkdir()
    # Offline: no package index, and the editable build uses this environment's setuptools
    # (pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation).
    env = standin.offline_env(
        dict(os.environ), mirror, HOME=str(tmp / "home"), JUPYTER_PATH=str(tmp / "jupyter"),
        PYTHONPATH=str(standin.site_folder(tmp / "site", colab=colab_module)),
        GOOGLENET_BOOK_REPO=origin.as_uri(), PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1")
    return python, env


@pytest.fixture
def colab_runtime(tmp_path, origin, mirror) -> tuple[Path, dict[str, str]]:
    """A fresh Colab-like runtime (``google.colab`` importable), offline."""
    return _runtime(tmp_path, origin, mirror, colab_module=True)


@pytest.fixture
def plain_runtime(tmp_path, origin, mirror) -> tuple[Path, dict[str, str]]:
    """The same without Colab's module: a Jupyter on a reader's computer."""
    return _runtime(tmp_path, origin, mirror, colab_module=False)


def _nbval(env: dict[str, str], notebook: Path) -> subprocess.CompletedProcess:
    """nbval on a notebook in its folder, in the runtime's kernel."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", KERNEL,
         "--nbval-cell-timeout", "1500", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         "--rootdir", str(notebook.parent), notebook.name],
        cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=3600)


def _execute(python: Path, env: dict[str, str], notebook: Path) -> list[str]:
    """Run a notebook in its folder as the runtime's Jupyter would; return each output's text."""
    done = subprocess.run([python, "-m", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=300", "--output", "executed.ipynb", notebook.name],
                          cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads((notebook.parent / "executed.ipynb").read_text())["cells"]
    return ["".join(out.get("text", "")) for cell in cells for out in cell["outputs"]]


def _imports(chapter: Path) -> str:
    """Every import statement of a chapter's code cells, in order."""
    cells = json.loads(chapter.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"][1:]
    return "\n".join(ast.unparse(node) for source in sources for node in ast.walk(ast.parse(source))
                     if isinstance(node, ast.Import | ast.ImportFrom))


def test_the_runtime_has_the_libraries_and_colab_but_not_this_package_nor_the_dataset(colab_runtime,
                                                                                        tmp_path):
    python, env = colab_runtime
    check = ("import importlib.util, sys, torch, torchvision\n"
             "assert 'google.colab' in sys.modules\n"
             "assert importlib.util.find_spec('googlenet') is None, 'googlenet is importable'\n"
             "from torchvision.datasets import FashionMNIST\n"
             f"assert dict(FashionMNIST.resources) == {standin.debian_md5s()!r}\n")
    done = subprocess.run([python, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert env[standin.OFFLINE_COPY_VARIABLE] == "" and "GOOGLENET_DATA" not in env


def test_the_mirror_serves_what_torchvision_downloads(mirror, tmp_path):
    """torchvision's own download code, through the proxy variable, fetches and checks the files."""
    env = standin.offline_env(dict(os.environ), mirror,
                              PYTHONPATH=str(standin.site_folder(tmp_path / "site", colab=False)))
    fetch = (f"from torchvision.datasets import FashionMNIST\n"
             f"ds = FashionMNIST({str(tmp_path / 'data')!r}, train=False, download=True)\n"
             f"print(len(ds))")
    done = subprocess.run([sys.executable, "-c", fetch], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split()[-1] == "10000", done.stderr[-2000:]
    assert any(r.startswith("http://fashion-mnist") for r in mirror.requests), mirror.requests


@pytest.mark.notebooks
@pytest.mark.parametrize("chapter", colab.chapters(), ids=lambda p: p.stem)
def test_a_chapter_runs_in_a_fresh_colab_runtime(colab_runtime, mirror, tmp_path, chapter):
    python, env = colab_runtime
    workdir = tmp_path / "content"  # Colab's working folder: the notebook, alone
    workdir.mkdir()
    notebook = workdir / chapter.name
    notebook.write_bytes(_git("show", f"HEAD:book/{chapter.name}", cwd=ROOT).encode())
    if chapter.stem in FLOAT32:
        env = {**env, "ATEN_CPU_CAPABILITY": "avx2"}  # googlenet.device then finds no native bf16
    before = len(mirror.requests)
    done = _nbval(env, notebook)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    clone = Path(env["HOME"]) / colab.CLONE_NAME
    assert (clone / "book" / "booktools.py").is_file(), "the set-up cell fetched the book"
    fetched = (clone / "data" / "FashionMNIST" / "raw").is_dir()
    if chapter.stem in DOWNLOADING:
        assert fetched, "the chapter loaded Fashion-MNIST without downloading it"
        assert len(mirror.requests) > before
    assert not (notebook.parent / "data").exists(), "data went next to the notebook, not to the clone"


@pytest.mark.notebooks
def test_every_chapters_imports_work_in_a_chapter_downloaded_alone(plain_runtime, tmp_path):
    """Outside Colab and outside a clone, the set-up cell fetches the book; then every import resolves."""
    python, env = plain_runtime
    workdir = tmp_path / "Downloads"
    workdir.mkdir()
    cells = [_code(colab.cell_source()), _code(colab.cell_source()),
             *[_code(_imports(chapter)) for chapter in colab.chapters()], _code(PROBE)]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    (workdir / "alone.ipynb").write_text(json.dumps(nb, indent=1))
    text = _execute(python, env, workdir / "alone.ipynb")
    probe = json.loads(text[-1])
    clone = Path(env["HOME"]) / colab.CLONE_NAME
    assert probe["executable"] == str(python)
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
