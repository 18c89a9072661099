"""The HTML book in a real browser: a build from the committed outputs, a server, headless Chromium.

tests/conftest.py turns `built_book`, `book_url` and `browser` into session fixtures; a browser
test asks for them and opens a chapter with `open_chapter(browser, book_url, "03_inception_module")`.
The build runs once per session (about a minute on two busy cores), without executing a notebook.
The tests need Debian's `chromium` and `chromium-driver` (`/usr/bin/chromedriver`), installed by
.ci/run; a missing one fails the tests, it never skips them.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# What the build reads: the configuration, the table of contents, the CSS, the chapters' folder and the
# README (the front page includes it), without the runs a chapter writes beside itself or caches.
BOOK_FILES = ("_config.yml", "_toc.yml", "_static", "book", "README.md")
BASELINE = "01_introduction"  # a chapter with no interactive figure
IGNORED = shutil.ignore_patterns("_runs", "data", "__pycache__", ".ipynb_checkpoints", "_build")


def build_book(out: Path) -> Path:
    """Copy the book to `out`, build its HTML from the stored outputs (no execution); the html dir."""
    for name in BOOK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=IGNORED)
        else:
            shutil.copy2(source, out / name)
    config = yaml.safe_load((out / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", "-W", "-n", "--keep-going",
               str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"jupyter-book build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return out / "_build" / "html"


@functools.cache
def _quiet_handler(directory: str) -> type[http.server.SimpleHTTPRequestHandler]:
    """A static-file handler for `directory` that does not log every request to stderr."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format, *args):  # noqa: A002  (the base class's name)
            pass

    return Handler


def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on a free local port, in a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def chromium_driver():
    """A headless Chromium driven through Debian's chromedriver, with the console log kept."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
                    "(`sudo apt-get install chromium chromium-driver`, as .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,2000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager, which would download one, is never consulted.
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def open_chapter(driver, base_url: str, chapter: str) -> list[str]:
    """Load `book/<chapter>.html`; return its SEVERE console messages, the page's address cut off."""
    driver.get_log("browser")  # drop what earlier pages logged
    address = f"{base_url}/book/{chapter}.html"
    driver.get(address)
    driver.execute_script("return document.readyState")
    return sorted(re.sub(rf"^{re.escape(address)} \d+:\d+ ", "", entry["message"])
                  for entry in driver.get_log("browser") if entry["level"] == "SEVERE")


def new_errors(driver, base_url: str, chapter: str, baseline: str = BASELINE) -> list[str]:
    """The SEVERE console messages of `chapter` that are not the book's own.

    Every page logs a few (the theme declares `THEBE_JS_URL` twice; there is no favicon): those a
    chapter with no figure logs too are left out, and so are resources of other hosts, which do not
    load offline (the CDN's MathJax): the figures load nothing.
    """
    book_wide = set(open_chapter(driver, base_url, baseline))
    elsewhere = re.compile(r"^https?://(?!127\.0\.0\.1)\S+ - Failed to load resource")
    return [message for message in open_chapter(driver, base_url, chapter)
            if message not in book_wide and not elsewhere.match(message)]
