"""The book's setting: quick or full, chosen in one place from the device, overridden by one variable.

Every chapter takes its sizes from `booktools.book_setting()`; these tests check the choice, the
override in both directions, and that each setting's sizes make sense together (a sample is never
larger than the pool it is drawn from, the full setting never computes less than the quick one).
"""

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import booktools  # noqa: E402  (the chapters' own helpers, imported as the chapters do)

VARIABLE = booktools.SETTING_VARIABLE


@pytest.fixture
def on(monkeypatch):
    """Make `auto` pick the given device type, as if this machine had it."""
    def pretend(kind: str) -> None:
        monkeypatch.setattr(booktools, "pick_device", lambda name="auto": torch.device(kind))
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delenv(booktools.TRAIN_SECONDS_VARIABLE, raising=False)
    return pretend


@pytest.mark.parametrize(("device", "expected"), [("cpu", "quick"), ("cuda", "full"), ("mps", "full")])
def test_the_device_chooses_the_setting(on, device, expected):
    on(device)
    setting = booktools.book_setting()
    assert setting.name == expected and setting.device.type == device
    assert setting.sizes is booktools.SIZES[expected]
    assert str(setting).startswith(f"{expected.capitalize()} setting (") and VARIABLE in str(setting)


@pytest.mark.parametrize(("device", "asked"), [("cpu", "full"), ("cuda", "quick"), ("cpu", "quick")])
def test_the_variable_overrides_the_device_both_ways(on, monkeypatch, device, asked):
    on(device)
    monkeypatch.setenv(VARIABLE, asked.upper())  # case does not matter
    setting = booktools.book_setting()
    assert (setting.name, setting.full, setting.device.type) == (asked, asked == "full", device)
    assert f"{VARIABLE}={asked}" in setting.why


def test_a_wrong_value_is_one_clear_error(on, monkeypatch):
    on("cpu")
    monkeypatch.setenv(VARIABLE, "fast")
    with pytest.raises(ValueError, match=f"{VARIABLE}='fast': expected one of quick, full"):
        booktools.book_setting()


def test_the_training_clock_can_be_capped_for_a_rehearsal(on, monkeypatch):
    on("cpu")
    monkeypatch.setenv(VARIABLE, "full")
    monkeypatch.setenv(booktools.TRAIN_SECONDS_VARIABLE, "600")
    setting = booktools.book_setting()
    assert setting.sizes.train_seconds == 600 and "capped at 600 s" in setting.why
    assert setting.sizes.train_epochs == booktools.FULL.train_epochs  # only the clock changes
    monkeypatch.setenv(booktools.TRAIN_SECONDS_VARIABLE, "ten")
    with pytest.raises(ValueError, match="expected a whole number of seconds"):
        booktools.book_setting()
    monkeypatch.setenv(booktools.TRAIN_SECONDS_VARIABLE, "600")
    monkeypatch.setenv(VARIABLE, "quick")  # a cap never lengthens the quick run
    assert booktools.book_setting().sizes.train_seconds == booktools.QUICK.train_seconds


@pytest.mark.parametrize("name", ["quick", "full"])
def test_every_sample_fits_its_pool(name):
    s = booktools.SIZES[name]
    shown = s.per_class * booktools.SHOWN_CLASSES  # chapter 9's shown test images
    assert 0 < s.share_images <= shown
    for sample in (s.multiview_images, s.eval_96_images, s.ablation_images, shown):
        assert 0 < sample <= booktools.TEST_IMAGES
    assert s.train_epochs >= 1 and (s.train_seconds is None or s.train_seconds > 0)
    assert min(s.render_steps, s.ig_steps, s.folder_epochs, s.range_steps, s.bench_repetitions,
               s.live_per_branch) >= 1


def test_the_full_setting_never_computes_less_than_the_quick_one():
    quick, full = booktools.QUICK, booktools.FULL
    for field in dataclasses.fields(booktools.Sizes):
        q, f = getattr(quick, field.name), getattr(full, field.name)
        if field.name == "train_seconds":
            assert f is None or (q is not None and f >= q)  # None: no clock limit
        else:
            assert f >= q, field.name


@pytest.mark.parametrize("name", ["quick", "full"])
def test_the_training_run_follows_the_setting_and_says_so(on, monkeypatch, capsys, name):
    on("cpu")
    monkeypatch.setenv(VARIABLE, name)
    config = booktools.fashion_mnist_config(booktools.book_setting(), out_dir="somewhere")
    out = capsys.readouterr().out
    sizes = booktools.SIZES[name]
    assert (config.epochs, config.time_limit) == (sizes.train_epochs, sizes.train_seconds)
    assert f"{name} setting: {sizes.train_epochs} epochs" in out and "precision:" in out
    assert config.device == "cpu" and config.out_dir == "somewhere" and config.schedule == "onecycle"
    assert (config.average == "ema") == (name == "full")


def test_no_chapter_decides_its_setting_by_itself():
    """No chapter asks for a GPU to choose its sizes; every chapter that trains, renders or times
    reads the book's setting."""
    heavy = re.compile(r"(?<![.\w])train\(|render\(|run_benchmark\(|branch_ablation\(|transfer_curve\(")
    for chapter in sorted((ROOT / "book").glob("[0-9]*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(chapter.read_text())["cells"]
                       if c["cell_type"] == "code")
        assert "cuda.is_available()" not in code, chapter.name
        assert not re.search(r"(QUICK|FULL) = .*device", code, re.I), chapter.name
        if heavy.search(code):
            assert "book_setting()" in code, f"{chapter.name} computes but never reads the setting"
