"""The book's machinery: table of contents, the shared Colab cell, checked outputs, README vs CI."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import colab  # noqa: E402  (book/colab.py: the one source of the Colab cell)

CHAPTERS = colab.chapters()


def _toc_files(entries):
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        yield from _toc_files(entry.get("chapters", []) + entry.get("sections", []))


def test_toc_and_notebooks_agree():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"], *_toc_files(toc.get("parts", []))]
    docs = {f: [p for p in ROOT.glob(f + ".*") if p.suffix in (".md", ".ipynb")] for f in files}
    assert all(len(found) == 1 for found in docs.values()), {f: d for f, d in docs.items() if len(d) != 1}
    listed = {p for found in docs.values() for p in found}
    notebooks = {p for p in (ROOT / "book").rglob("*.ipynb") if "_build" not in p.parts
                 and ".ipynb_checkpoints" not in p.parts}
    assert notebooks - listed == set(), "notebooks missing from _toc.yml"
    assert len(CHAPTERS) == 11


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_opens_with_the_shared_colab_cell(path):
    first = json.loads(path.read_text())["cells"][0]
    assert first["cell_type"] == "code"
    assert "".join(first["source"]) == colab.cell_source(), "run `python book/colab.py`"
    assert first["metadata"].get("tags") == colab.TAGS, "run `python book/colab.py`"
    assert colab.repository_url() in colab.cell_source()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_checked_outputs(path):
    """nbval --nbval-lax compares only cells tagged `nbval-check-output`, which must hold stored outputs."""
    cells = json.loads(path.read_text())["cells"]
    checked = [c for c in cells if c["cell_type"] == "code"
               and "nbval-check-output" in c["metadata"].get("tags", [])]
    assert len(checked) >= 2, "mark the cells that print the chapter's numbers"
    assert all(c["outputs"] and c["execution_count"] for c in checked), "execute and commit outputs"
    errors = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]
              if o["output_type"] == "error"]
    assert not errors


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_reads_cleanly_in_the_html(path):
    """Code lines fit the page (88 columns) and no nbval marker comment shows: markers are cell tags."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        assert not [line for line in lines if len(line) > 88], f"cell {i}: lines over 88 characters"
        assert not [line for line in lines if "NBVAL_" in line], f"cell {i}: use a cell tag, not a comment"


def test_notebooks_use_no_absolute_paths():
    pattern = re.compile(r"""['"]/(tmp|root|home|work|Users)/""")
    for path in CHAPTERS:
        for cell in json.loads(path.read_text())["cells"]:
            assert not pattern.search("".join(cell["source"])), path.name


def test_readme_opens_every_chapter_in_colab():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\((https://colab\.research\.google\.com/[^)]+\.ipynb)\)", readme)
    assert links == [colab.colab_url(path) for path in CHAPTERS]


def test_the_oldest_supported_versions_are_what_ci_tests():
    """pyproject's lower bounds are the versions .ci/run's second environment pins, and the README's."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    floors = dict(re.findall(r'"(torch|torchvision)>=([\d.]+)"', pyproject))
    pinned = re.search(r'^OLDEST_TORCH="(.*)"$', ci, re.MULTILINE).group(1)
    assert dict(re.findall(r"(torch|torchvision)==([\d.]+)", pinned)) == floors
    python = re.search(r'^requires-python = ">=([\d.]+)"$', pyproject, re.MULTILINE).group(1)
    assert f"OLDEST_PYTHON={python}\n" in ci
    readme = (ROOT / "README.md").read_text()
    assert f"Python {python}, torch {floors['torch']} and torchvision {floors['torchvision']}" in readme


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "OMP_NUM_THREADS=1 pytest -n auto --dist worksteal tests"
    assert command in readme and f"{command} || exit 1" in ci.splitlines()
    assert "jupyter-book build -W -n --keep-going ." in readme
