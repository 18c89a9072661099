"""Numbers in the prose are the numbers the cells printed.

A code cell records a value with `booktools.glue("key", text)`; a markdown cell writes the same text
followed by an HTML comment naming the key, `39<!--glue:key-->`. Each such literal must equal the text
stored in the notebook's outputs, so a rerun that changes a number fails here until the prose follows.
"""

import ast
import copy
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import booktools  # noqa: E402  (the chapters' own helpers, imported as the chapters do)
import colab  # noqa: E402  (book/colab.py lists the chapters)

CHAPTERS = colab.chapters()
REFERENCE = re.compile(r"<!--glue:(.*?)-->")
KEY = re.compile(r"[A-Za-z0-9_.]+")  # no "--" (it would end an HTML comment) and no spaces


def glued(notebook: dict) -> dict[str, list[str]]:
    """Every text recorded by `glue` in the notebook's stored outputs: {key: [text, ...]}."""
    found: dict[str, list[str]] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if record is None:
                continue
            plain = output["data"][record.get("mime_prefix", "") + "text/plain"]
            text = "".join(plain) if isinstance(plain, list) else plain
            found.setdefault(record["name"], []).append(ast.literal_eval(text))  # as {glue:text} reads it
    return found


def mismatches(notebook: dict) -> list[str]:
    """Each prose reference whose key is not glued once, or whose literal is not the glued text."""
    values = glued(notebook)
    problems = [f"{key!r} glued {len(texts)} times" for key, texts in values.items() if len(texts) > 1]
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        for match in REFERENCE.finditer(source):
            key, before = match.group(1), source[: match.start()]
            if not KEY.fullmatch(key):
                problems.append(f"cell {i}: bad key {key!r}")
            elif key not in values:
                problems.append(f"cell {i}: {key!r} is referenced but no cell glues it")
            else:
                text = values[key][0]
                rest = before[: len(before) - len(text)]
                whole = before.endswith(text) and not re.search(r"[\d.,]\Z", rest)
                if not whole:
                    problems.append(f"cell {i}: {key!r} is {text!r} but the prose says {before[-20:]!r}")
    return problems


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_prose_numbers_are_the_glued_outputs(path):
    assert mismatches(_load(path)) == []


def _displayed(*calls) -> list[tuple[dict, dict]]:
    """(data, metadata) of every output the calls display, as a Jupyter kernel would record them."""
    pytest.importorskip("IPython", reason="booktools.glue runs in a Jupyter kernel, which has IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        for call in calls:
            call()
    return [(o.data, o.metadata) for o in captured.outputs]


def _notebook(markdown: str, *glues: tuple[str, str]) -> dict:
    """A notebook whose one code cell glued `glues` (recorded by booktools.glue) and one markdown cell."""
    shown = _displayed(*(lambda k=key, t=text: booktools.glue(k, t) for key, text in glues))
    outputs = [{"output_type": "display_data", "data": data, "metadata": meta} for data, meta in shown]
    return {"cells": [{"cell_type": "code", "source": "", "outputs": outputs},
                      {"cell_type": "markdown", "source": markdown}]}


def test_the_checker_accepts_the_glued_literal_and_rejects_any_other():
    assert mismatches(_notebook("about 39<!--glue:ratio-->-fold", ("ratio", "39"))) == []
    assert mismatches(_notebook("about 38<!--glue:ratio-->-fold", ("ratio", "39")))  # planted mismatch
    assert mismatches(_notebook("about 139<!--glue:ratio-->-fold", ("ratio", "39")))  # not the whole number
    assert mismatches(_notebook("about 39<!--glue:ratio-->-fold"))  # referenced, never glued
    assert mismatches(_notebook("39<!--glue:ratio-->", ("ratio", "39"), ("ratio", "39")))  # glued twice


def test_a_planted_mismatch_in_a_chapter_fails():
    """A digit added to a real chapter's glued literal (in a copy in memory) is caught."""
    chapters = [nb for nb in map(_load, CHAPTERS) if glued(nb)]
    assert chapters, "no chapter glues a number yet"
    notebook = copy.deepcopy(chapters[0])
    assert mismatches(notebook) == []
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "markdown"
                and REFERENCE.search("".join(c["source"])))
    source = "".join(cell["source"])
    end = REFERENCE.search(source).start()
    cell["source"] = source[:end] + "7" + source[end:]
    assert mismatches(notebook)


def test_glue_records_what_myst_nb_records():
    """booktools.glue stores the same output as myst-nb's own glue, so the book build reads it."""
    myst_nb = pytest.importorskip("myst_nb")
    ours = _displayed(lambda: booktools.glue("k", "1.2e+01"))
    theirs = _displayed(lambda: myst_nb.glue("k", "1.2e+01", display=False))
    assert ours == theirs and len(ours) == 1
