"""A Sphinx extension of the book: serve the microscope's files (book/results/microscope/) from the
HTML book's _static/microscope/, where chapter 9's viewer (book/figures/microscope.js) fetches them."""

import shutil
from pathlib import Path

FOLDER = Path(__file__).parent / "results" / "microscope"


def copy_microscope(app, exception) -> None:
    """After an HTML build, copy the microscope's JSON and sprite sheets under _static/."""
    if exception is None and app.builder.format == "html":
        shutil.copytree(FOLDER, Path(app.outdir) / "_static" / "microscope", dirs_exist_ok=True)


def setup(app) -> dict:
    app.connect("build-finished", copy_microscope)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
