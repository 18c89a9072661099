"""The book's figures a reader can play with, in a real browser: they load, react, and count right.

The HTML book is built once from the committed outputs (tests/book_browser.py, fixtures in
conftest.py) and opened in headless Chromium. What the page shows is compared with what Python
computes from real modules: `googlenet.Inception`'s parameters, multiply-adds counted by forward
hooks (Chapter 2's rule: output values times the inputs each one reads), and
`googlenet.receptive.receptive_fields`.
"""

from __future__ import annotations

import base64
import json
import random
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import googlenet
from googlenet.architecture import INCEPTION_ROWS
from googlenet.receptive import receptive_fields

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import interactive  # noqa: E402  (book/interactive.py, imported as the chapters do)

FIGURES = {"module_cost": "03_inception_module", "receptive_field": "02_convolutions",
           "microscope": "09_looking_inside"}
MICROSCOPE = ROOT / "book" / "results" / "microscope"
INPUT = 224


# --------------------------------------------------------------------------- Python's numbers


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution in `module` on `x`, from the output shapes (meta tensors)."""
    total = 0

    def hook(conv: nn.Conv2d, inputs, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


def naive_module(c_in: int, n1: int, n3: int, n5: int) -> nn.Module:
    """Figure 2a: 1x1, 3x3, 5x5 convolutions (with biases) and a 3x3 max pool on the input."""
    module = nn.Module()
    module.branch1 = nn.Conv2d(c_in, n1, 1)
    module.branch2 = nn.Conv2d(c_in, n3, 3, padding=1)
    module.branch3 = nn.Conv2d(c_in, n5, 5, padding=2)
    module.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
    return module


def python_costs(c_in: int, grid: int, widths: tuple[int, ...]) -> dict[str, int]:
    """The figure's numbers, keyed as the page keys them, from real modules on the meta device."""
    n1, _, n3, _, n5, _ = widths
    with torch.device("meta"):
        modules = {"reduced": googlenet.Inception(c_in, *widths, batch_norm=False, kernel5=5),
                   "naive": naive_module(c_in, n1, n3, n5)}
        x = torch.empty(1, c_in, grid, grid)
        found = {}
        for name, module in modules.items():
            outs = []
            for branch, label in zip(range(1, 5), interactive.BRANCHES, strict=True):
                part = getattr(module, f"branch{branch}")
                found[f"{name}.params.{label}"] = sum(p.numel() for p in part.parameters())
                found[f"{name}.macs.{label}"] = count_macs(part, x)
                outs.append(part(x).shape[1])
            found[f"{name}.params.total"] = sum(p.numel() for p in module.parameters())
            found[f"{name}.macs.total"] = sum(found[f"{name}.macs.{b}"] for b in interactive.BRANCHES)
            found[f"{name}.out"] = sum(outs)
    assert found["reduced.out"] == googlenet.Inception(c_in, *widths).to("meta")(x).shape[1]
    return found


def map_sides(variant: str) -> dict[str, int]:
    """Each top-level layer's output side on a 224-px input, from a forward pass on meta tensors."""
    with torch.device("meta"):
        model = googlenet.GoogLeNet(variant=variant, aux_logits=False).eval()
        sides = {}
        hooks = [m.register_forward_hook(lambda mod, i, out, n=n: sides.__setitem__(n, out.shape[-1]))
                 for n, m in model.named_children()]
        with torch.no_grad():
            model(torch.empty(1, 3, INPUT, INPUT))
    for hook in hooks:
        hook.remove()
    return sides


# --------------------------------------------------------------------------- the stored notebooks


def stored_figure(name: str) -> dict:
    """The output bundle of the cell that displays figure `name`, from the committed notebook."""
    notebook = json.loads((ROOT / "book" / f"{FIGURES[name]}.ipynb").read_text())
    found = [o["data"] for c in notebook["cells"] if c["cell_type"] == "code" for o in c["outputs"]
             if f'data-figure="{name}"' in "".join(o.get("data", {}).get("text/html", ""))]
    assert len(found) == 1, f"{name}: expected one stored output, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("name", FIGURES)
def test_the_stored_output_holds_the_fallback_picture_and_the_current_script(name):
    data = stored_figure(name)
    page = "".join(data["text/html"])
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")
    png = "".join(data["image/png"]).replace("\n", "")
    assert base64.b64decode(png).startswith(b"\x89PNG"), "a picture for front ends without HTML"
    assert interactive.script(name) in page, f"re-execute {FIGURES[name]}: book/figures/{name}.js changed"
    assert "</script" not in re.search(r'class="gn-data">(.*?)</script>', page, re.S).group(1)


# --------------------------------------------------------------------------- in the browser


READ = """
const root = document.querySelector('[data-figure="' + arguments[0] + '"]');
const out = {};
for (const e of root.querySelectorAll('[data-key]')) out[e.dataset.key] = e.textContent;
return out;
"""


def shown(browser, name: str) -> dict[str, str]:
    """Every element of the figure that carries a data-key: its text as the page shows it."""
    return browser.execute_script(READ, name)


def as_int(text: str) -> int:
    """A number as the page prints it, "128,049,152" -> 128049152."""
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def page(browser, book_url):
    """Opens a chapter and returns the SEVERE console messages of its loading."""
    from book_browser import open_chapter

    return lambda chapter: open_chapter(browser, book_url, chapter)


def test_a_script_error_reaches_the_console_log(browser, page):
    page(FIGURES["module_cost"])
    browser.execute_script("setTimeout(() => { throw new Error('planted'); }, 0);")
    browser.execute_script("return 1")  # a round trip, so the timer has fired
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "planted" in e["message"]]


@pytest.mark.parametrize("name", FIGURES)
def test_the_figure_loads_without_errors_and_replaces_its_fallback(browser, book_url, page, name):
    from book_browser import new_errors

    assert new_errors(browser, book_url, FIGURES[name]) == []
    page(FIGURES[name])
    figures = browser.find_elements("css selector", f'[data-figure="{name}"]')
    assert len(figures) == 1
    wait_for(browser, f'[data-figure="{name}"] select')  # the microscope fetches its files first
    assert figures[0].find_elements("css selector", "img") == [], "the script did not run"
    assert figures[0].find_elements("css selector", "select"), "no controls"


def wait_for(browser, css: str, seconds: float = 10):
    """The first element matching `css`, once the page has made one."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds).until(lambda b: b.find_elements("css selector", css))[0]


def select(browser, name: str, control: str, value: str) -> None:
    """Choose `value` in the figure's menu `control`, as a reader does."""
    from selenium.webdriver.support.ui import Select

    element = browser.find_element("css selector", f'[data-figure="{name}"] select[data-control="{control}"]')
    Select(element).select_by_value(value)


def type_into(browser, control: str, value: int) -> None:
    """Type `value` into the module-cost figure's number box `control`."""
    box = browser.find_element("css selector",
                               f'[data-figure="module_cost"] input[type=number][data-control="{control}"]')
    box.clear()
    box.send_keys(str(value))


def check_costs(browser, c_in: int, grid: int, widths: tuple[int, ...]) -> None:
    """The page's table and ratio line agree with Python for this module."""
    page_numbers = shown(browser, "module_cost")
    expected = python_costs(c_in, grid, widths)
    assert {k: as_int(page_numbers[k]) for k in expected} == expected, (c_in, grid, widths)
    naive, reduced = expected["naive.macs.total"], expected["reduced.macs.total"]
    assert f"{naive / reduced:.2f}x the multiply-adds" in page_numbers["ratio"]


def test_every_preset_is_its_table1_row_and_counts_right(browser, page):
    page(FIGURES["module_cost"])
    c_in = 192
    for row in INCEPTION_ROWS:
        select(browser, "module_cost", "preset", row.name)
        widths = (row.n1x1, row.n3x3_reduce, row.n3x3, row.n5x5_reduce, row.n5x5, row.pool_proj)
        check_costs(browser, c_in, row.output[0], widths)
        assert as_int(shown(browser, "module_cost")["reduced.out"]) == row.output[2]
        c_in = row.output[2]
    menu = browser.find_element("css selector", '[data-figure="module_cost"] [data-control="preset"]')
    assert menu.get_attribute("aria-label") == "Table 1 module"
    for key in ("reduced.out", "naive.out"):  # each under its module's two columns
        cell = browser.find_element("css selector", f'[data-figure="module_cost"] td[data-key="{key}"]')
        assert cell.get_attribute("colspan") == "2"


def test_typed_sizes_count_right(browser, page):
    page(FIGURES["module_cost"])
    rng = random.Random(30)
    for _ in range(4):
        c_in, grid = rng.randint(1, 1024), rng.randint(1, 56)
        widths = tuple(rng.randint(1, 1024) for _ in range(6))
        for control, value in (("c_in", c_in), ("grid", grid), *enumerate(widths)):
            type_into(browser, str(control), value)
        menu = browser.find_element("css selector", '[data-control="preset"]')
        assert menu.get_attribute("value") == "custom"
        check_costs(browser, c_in, grid, widths)


def test_moving_a_slider_changes_the_cost(browser, page):
    from selenium.webdriver.common.keys import Keys

    page(FIGURES["module_cost"])
    before = shown(browser, "module_cost")
    slider = browser.find_element(
        "css selector", '[data-figure="module_cost"] input[type=range][data-control="3"]')
    slider.send_keys(Keys.ARROW_RIGHT)  # #5x5 reduce: 16 -> 17
    after = shown(browser, "module_cost")
    assert as_int(after["reduced.macs.5x5"]) > as_int(before["reduced.macs.5x5"])
    assert after["naive.macs.5x5"] == before["naive.macs.5x5"]
    row = INCEPTION_ROWS[0]
    check_costs(browser, 192, 28, (row.n1x1, row.n3x3_reduce, row.n3x3, 17, row.n5x5, row.pool_proj))


FIELD = """
const root = document.querySelector('[data-figure="receptive_field"]');
const rect = (key) => root.querySelector('[data-key="' + key + '"]');
const at = (key, name) => Number(rect(key).getAttribute(name));
const dots = [...root.querySelectorAll('[data-key="centres"] circle')];
const row = (name) => [...new Set(dots.map((d) => Number(d.getAttribute(name))))].sort((a, b) => a - b);
return {size: at('field', 'width'), shift: at('neighbour', 'x') - at('field', 'x'),
        image: at('image', 'width'), corner: [at('image', 'x'), at('image', 'y')],
        centres: dots.length, xs: row('cx'), ys: row('cy'),
        unit: [at('unit', 'cx'), at('unit', 'cy')],
        middle: [at('field', 'x') + at('field', 'width') / 2, at('field', 'y') + at('field', 'height') / 2]};
"""


def drawn_field(browser) -> dict:
    """What the receptive-field figure draws: sizes, the neighbour's shift, the grid of centres."""
    return browser.execute_script(FIELD)


def test_every_layer_shows_its_receptive_field(browser, page):
    page(FIGURES["receptive_field"])
    for variant in ("paper", "torchvision"):
        select(browser, "receptive_field", "variant", variant)
        fields = receptive_fields(googlenet.GoogLeNet(variant=variant, aux_logits=False))
        sides = map_sides(variant)
        layers = [name for name in fields if not name.startswith("lrn")]
        options = browser.find_elements("css selector", '[data-control="layer"] option')
        assert [o.get_attribute("value") for o in options] == layers
        for name in layers:
            select(browser, "receptive_field", "layer", name)
            text, drawn = shown(browser, "receptive_field"), drawn_field(browser)
            rf = fields[name]
            assert (as_int(text["size"]), as_int(text["jump"]), as_int(text["side"])) == (
                rf.size, rf.jump, sides[name]), (variant, name)
            # Unit i of a row is centred on input pixel start + i * jump (pixel p spans p +- 0.5).
            grid = [rf.start + i * rf.jump for i in range(sides[name])]
            mid = grid[(sides[name] - 1) // 2]
            assert drawn == {"size": rf.size, "shift": rf.jump, "image": INPUT, "corner": [-0.5, -0.5],
                             "centres": sides[name] ** 2, "xs": grid, "ys": grid,
                             "unit": [mid, mid], "middle": [mid, mid]}, (variant, name)
            slider = browser.find_element("css selector", '[data-control="layer-index"]')
            assert slider.get_attribute("aria-valuetext") == name


def test_picking_another_layer_or_unit_changes_the_picture(browser, page):
    page(FIGURES["receptive_field"])
    select(browser, "receptive_field", "variant", "paper")
    select(browser, "receptive_field", "layer", "conv1")
    small = drawn_field(browser)
    select(browser, "receptive_field", "layer", "inception5b")
    large = drawn_field(browser)
    assert (small["size"], large["size"]) == (7, 715) and small["centres"] > large["centres"]
    before = shown(browser, "receptive_field")["readout"]
    canvas = browser.find_element("css selector", '[data-figure="receptive_field"] svg')
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(canvas, -150, -150).click().perform()
    after = shown(browser, "receptive_field")["readout"]
    assert "Unit (3, 3) is shown" in before and "Unit (0, 0) is shown" in after


def test_the_arrow_keys_move_the_unit_and_the_neighbour_stays_on_the_grid(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page(FIGURES["receptive_field"])
    select(browser, "receptive_field", "variant", "paper")
    select(browser, "receptive_field", "layer", "inception5b")
    rf = receptive_fields(googlenet.GoogLeNet(aux_logits=False))["inception5b"]
    figure = '[data-figure="receptive_field"]'
    for control in ("variant", "layer", "layer-index"):
        label = browser.find_element("css selector", f'{figure} [data-control="{control}"]')
        assert label.get_attribute("aria-label"), control
    # The picture is reached with Tab from the slider, as a keyboard user reaches it.
    browser.execute_script(f"document.querySelector('{figure} [data-control=\"layer-index\"]').focus()")
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.execute_script("return document.activeElement.dataset.key") == "canvas"

    def press(*keys) -> tuple[str, dict]:
        ActionChains(browser).send_keys(*keys).perform()
        return shown(browser, "receptive_field")["readout"], drawn_field(browser)

    text, drawn = press(Keys.ARROW_LEFT, Keys.ARROW_UP, Keys.ARROW_UP)
    assert "Unit (2, 1) is shown" in text
    assert drawn["unit"] == [rf.start + 2 * rf.jump, rf.start + 1 * rf.jump] == drawn["middle"]
    assert drawn["shift"] == rf.jump
    text, drawn = press(*[Keys.ARROW_RIGHT] * 9, Keys.ARROW_DOWN)  # stops at the last column
    assert "Unit (6, 2) is shown" in text and drawn["unit"][0] == rf.start + 6 * rf.jump
    assert drawn["shift"] == -rf.jump, "in the last column the neighbour is the one on the left"


# --------------------------------------------------------------------------- the microscope
THUMBS = """
return [...document.querySelectorAll('[data-figure="microscope"] .ms-thumb')].map(
    t => [Number(t.dataset.channel), t.dataset.src]);
"""
SPRITES = """
return performance.getEntriesByType("resource").map(e => e.name).filter(
    n => n.includes("/microscope/"));
"""


def test_the_microscope_shows_every_layer_and_branch_from_the_books_own_files(browser, page,
                                                                             built_book, book_url):
    scope = json.loads((MICROSCOPE / "microscope.json").read_text())
    page(FIGURES["microscope"])
    wait_for(browser, '[data-figure="microscope"] .ms-thumb')
    for layer, info in scope["layers"].items():
        select(browser, "microscope", "layer", layer)
        thumbs = browser.execute_script(THUMBS)
        assert [c for c, _ in thumbs] == [c["channel"] for c in info["channels"]], layer
        assert {src.rsplit("/", 1)[-1] for _, src in thumbs} == {f"{s}.jpg" for s in info["sheets"]}
        branches = sorted({c["branch"] for c in info["channels"]})
        for branch in branches if len(branches) > 1 else []:
            select(browser, "microscope", "branch", branch)
            assert [c for c, _ in browser.execute_script(THUMBS)] == [
                c["channel"] for c in info["channels"] if c["branch"] == branch], (layer, branch)
    # Clicking a channel shows its own numbers, from the committed JSON.
    select(browser, "microscope", "layer", "inception4c")
    select(browser, "microscope", "branch", "branch3")
    pick = [c for c in scope["layers"]["inception4c"]["channels"] if c["branch"] == "branch3"][-1]
    channel = pick["channel"]
    browser.find_element("css selector",
                         f'[data-figure="microscope"] .ms-thumb[data-channel="{channel}"]').click()
    text = shown(browser, "microscope")
    assert text["title"] == f"inception4c channel {channel} (branch3)"
    assert f"render {pick['render']:.2f} before the ReLU, above" in text["numbers"]
    assert f"class selectivity {pick['selectivity']:.2f}" in text["numbers"]
    # Everything it loaded is one of the book's own files, served unchanged from _static/microscope/.
    loaded = browser.execute_script(SPRITES)
    assert any(n.endswith("microscope.json") for n in loaded) and any(n.endswith(".png") for n in loaded)
    for name in loaded:
        assert name.startswith(f"{book_url}/_static/microscope/"), name
        file = name.rsplit("/", 1)[-1]
        served = (built_book / "_static" / "microscope" / file).read_bytes()
        assert served == (MICROSCOPE / file).read_bytes(), file
