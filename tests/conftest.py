"""Shared fixtures: a Fashion-MNIST root made from Debian's files, and a tiny ImageFolder tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from googlenet.data import DEBIAN_FASHION_MNIST, FASHION_MNIST_FILES, ensure_fashion_mnist

FOLDER_CLASSES = ("circle", "square", "stripes")


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose FashionMNIST/raw holds the gunzipped Debian files (as CI prepares it)."""
    if not all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in FASHION_MNIST_FILES):
        pytest.fail(f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION_MNIST}): install it "
                    "(`sudo apt-get install dataset-fashion-mnist`, as .ci/run does); the tests need it")
    root = tmp_path_factory.mktemp("data")
    ensure_fashion_mnist(root)
    return root


def _draw(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A noisy picture of one of three easy shapes, so a model can learn something in one epoch."""
    yy, xx = np.mgrid[:size, :size] / size
    if kind == "circle":
        mask = (yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1
    elif kind == "square":
        mask = (abs(yy - 0.5) < 0.3) & (abs(xx - 0.5) < 0.3)
    else:
        mask = (xx * 6).astype(int) % 2 == 0
    pixels = 40 + 180 * mask[..., None] * np.array([1.0, 0.6, 0.2]) + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_image_folder(root: Path, per_class: dict[str, int], suffix: str = ".png",
                      classes: tuple[str, ...] = FOLDER_CLASSES) -> Path:
    """Write ``<root>/<split>/<class>/<i><suffix>`` images, ``per_class[split]`` of each class."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _draw(FOLDER_CLASSES[label % 3], rng).save(folder / f"{i}{suffix}")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageFolder tree: three classes of 32 px images, 8 per class to train, 4 to validate."""
    return make_image_folder(tmp_path_factory.mktemp("folder"), {"train": 8, "val": 4})


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one thread: on a busy machine two threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- the book in a browser
# tests/book_browser.py does the work; these fixtures share one build, one server and one browser per session.


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML book (its `_build/html`), built once from the committed outputs, nothing executed."""
    from book_browser import build_book

    return build_book(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def book_url(built_book: Path):
    """The base URL of a local HTTP server for the built book (pages at `<url>/book/<chapter>.html`)."""
    from book_browser import serve

    yield from serve(built_book)


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Selenium, Debian's chromedriver); its console log is readable."""
    from book_browser import chromium_driver

    driver = chromium_driver()
    yield driver
    driver.quit()
