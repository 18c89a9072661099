"""Figures a reader can play with in the HTML book, with no kernel: markup, data, script, fallback.

A figure is one `text/html` output holding a static picture of its default state (what GitHub, which
strips JavaScript, and an untrusted Jupyter show), its data as JSON, and the JavaScript of
`figures/<name>.js`, inlined so the output needs no file beside it (Colab runs it too). When the
script runs, it replaces the picture with controls. The same output carries the picture as
`image/png` for front ends that show no HTML. The numbers come from the notebook cell; the
script only recomputes what the reader changes.
"""

import base64
import hashlib
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from googlenet.features import trace
from googlenet.receptive import ReceptiveField

FIGURES = Path(__file__).resolve().parent / "figures"
WIDTH_LABELS = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")
BRANCHES = ("1x1", "3x3", "5x5", "pool")  # the keys of the figure's numbers
BRANCH_NAMES = ("1x1", "3x3", "5x5", "pool proj")  # as the chapter's tables name the branches
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")  # matplotlib's first four, as in the chapters
STYLE = """<style>
.gn-figure{max-width:42rem;margin:0.5rem 0;font-size:0.85rem;line-height:1.35}
.gn-figure img{max-width:100%}
.gn-figure table{border-collapse:collapse;margin:0.4rem 0}
.gn-figure th,.gn-figure td{padding:0.1rem 0.5rem;text-align:right;border-bottom:1px solid #ddd}
.gn-figure th:first-child,.gn-figure td:first-child{text-align:left}
.gn-controls{display:grid;grid-template-columns:repeat(2,7.5em minmax(5em,1fr) 4.6em);
 gap:0.2rem 0.4rem;align-items:center;margin:0.4rem 0}
.gn-controls input[type=number]{width:4.6em}
.gn-caption{color:#555;font-size:0.8rem;margin-top:0.3rem}
.gn-bars div.gn-bar{display:flex;height:1.3rem;margin:0.15rem 0}
.gn-bars div.gn-bar span{display:block;height:100%}
</style>"""


@dataclass(frozen=True)
class Interactive:
    """An output whose HTML plays in a browser and whose PNG stands in where no HTML is shown."""

    html: str
    png: bytes
    text: str

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The output as Jupyter stores it: HTML, the fallback picture and a line of text."""
        return {"text/html": self.html, "image/png": base64.b64encode(self.png).decode(),
                "text/plain": self.text}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed, so the notebook shows it only once."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def script(name: str) -> str:
    """The JavaScript of `figures/<name>.js`, which defines `draw(root, data)`."""
    return (FIGURES / f"{name}.js").read_text()


def figure_html(name: str, data: Mapping[str, Any], png: bytes, caption: str) -> str:
    """One self-contained `<div>`: fallback picture, JSON data, inlined script, caption."""
    payload = json.dumps(data, sort_keys=True)
    ident = f"gn-{name}-{hashlib.sha1(payload.encode()).hexdigest()[:8]}"
    safe = payload.replace("</", "<\\/")  # no "</script>" inside the data
    picture = base64.b64encode(png).decode()
    return (
        f'{STYLE}<div class="gn-figure" id="{ident}" data-figure="{name}">'
        f'<div class="gn-fallback"><img alt="{html.escape(name)}: the default state" '
        f'src="data:image/png;base64,{picture}"></div>'
        f'<script type="application/json" class="gn-data">{safe}</script>'
        f'<p class="gn-caption">{caption}</p>'
        f"<script>(function () {{\n{script(name)}\n"
        f'const root = document.getElementById("{ident}");\n'
        'draw(root, JSON.parse(root.querySelector("script.gn-data").textContent));\n'
        "})();</script></div>"
    )


# --------------------------------------------------------------------------- the module's cost


def conv_cost(c_in: int, c_out: int, k: int, grid: int) -> tuple[int, int]:
    """Parameters (weights, biases) and multiply-adds of a k x k 'same' convolution on a grid."""
    return k * k * c_in * c_out + c_out, grid * grid * c_out * k * k * c_in


def module_costs(c_in: int, grid: int, widths: Sequence[int]) -> dict[str, list[tuple[int, int]]]:
    """(parameters, multiply-adds) per branch, of the module with reductions and of the naive one."""
    n1, r3, n3, r5, n5, proj = widths

    def chain(*convs: tuple[int, int, int]) -> tuple[int, int]:
        costs = [conv_cost(a, b, k, grid) for a, b, k in convs]
        return sum(p for p, _ in costs), sum(m for _, m in costs)

    return {
        "reduced": [chain((c_in, n1, 1)), chain((c_in, r3, 1), (r3, n3, 3)),
                    chain((c_in, r5, 1), (r5, n5, 5)), chain((c_in, proj, 1))],
        "naive": [chain((c_in, n1, 1)), chain((c_in, n3, 3)), chain((c_in, n5, 5)), (0, 0)],
    }


def _cost_png(name: str, costs: dict[str, list[tuple[int, int]]]) -> bytes:
    """Stacked bars of the multiply-adds per branch, reduced above naive, as the live figure."""
    fig, ax = plt.subplots(figsize=(6.8, 2.1))
    left = [0.0, 0.0]
    for i, branch in enumerate(BRANCH_NAMES):
        values = [costs["reduced"][i][1] / 1e6, costs["naive"][i][1] / 1e6]
        ax.barh(["with reductions (2b)", "naive (2a)"], values, left=left, color=COLORS[i],
                label=f"{branch} branch")
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:,.0f}M", va="center")
    ax.invert_yaxis()  # the first bar on top
    ax.set_xlim(0, max(left) * 1.18)
    ax.set_xlabel(f"million multiply-adds, {name}")
    ax.legend(ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.45), frameon=False)
    fig.tight_layout()
    return png_bytes(fig)


def module_cost_figure(presets: Mapping[str, tuple[int, int, Sequence[int]]], default: str,
                       channels: int = 1024, grid: int = 56, width: int = 1024) -> Interactive:
    """The Inception module's cost, as the reader moves its input, grid and six widths.

    `presets` maps a module's name to (input channels, grid side, the six widths of Table 1);
    `channels`, `grid` and `width` are the controls' largest values.
    """
    data = {
        "presets": [{"name": n, "c_in": c, "grid": g, "widths": list(w)}
                    for n, (c, g, w) in presets.items()],
        "default": default, "labels": list(WIDTH_LABELS), "branches": list(BRANCHES),
        "names": list(BRANCH_NAMES),
        "colors": list(COLORS), "limits": {"c_in": channels, "grid": grid, "width": width},
    }
    c_in, side, widths = presets[default]
    costs = module_costs(c_in, side, widths)
    caption = (
        "Parameters: the weights and biases of every convolution, "
        "k&sup2;&middot;C<sub>in</sub>&middot;C<sub>out</sub> + C<sub>out</sub> (the paper's "
        "variant: no batch norm). Multiply-adds: H&middot;W&middot;C<sub>out</sub>&middot;"
        "k&sup2;&middot;C<sub>in</sub> per convolution on an H&times;W grid, as in Chapter 2: "
        "no bias additions, and the max pools count none. The naive module (Figure 2a) has "
        "the same #1x1, #3x3 and #5x5 and no reductions; its max pool passes all "
        "C<sub>in</sub> channels on."
    )
    total = sum(m for _, m in costs["reduced"])
    text = f"Inception module cost figure ({default}: {total:,} multiply-adds with reductions)"
    png = _cost_png(default, costs)
    return Interactive(figure_html("module_cost", data, png, caption), png, text)


# --------------------------------------------------------------------------- receptive fields


def map_sides(model: nn.Module, input_size: int) -> dict[str, int]:
    """Side of the feature map after each top-level layer, on a square input of `input_size`."""
    return {s.name: s.shape[-1] for s in trace(model, input_size) if len(s.shape) == 3}


def unit_centres(side: int, rf: ReceptiveField) -> list[float]:
    """Input-pixel indices on which a row of `side` units of a layer with field `rf` are centred."""
    return [rf.start + i * rf.jump for i in range(side)]


def neighbour(i: int, side: int) -> int:
    """The unit beside unit `i` of a row of `side`: the next one, or the one before in the last column."""
    return i + 1 if i + 1 < side else i - 1


def _field_png(layer: str, rf: ReceptiveField, side: int, input_size: int) -> bytes:
    """The input image, the grid of unit centres and the centre unit's receptive field.

    Coordinates are pixel indices: pixel i is the unit square centred on i, as in the live figure.
    """
    size = rf.size
    centres = unit_centres(side, rf)
    mid = (side - 1) // 2
    c, n = centres[mid], centres[neighbour(mid, side)]
    lo = min(-0.5, c - size / 2, n - size / 2) - 8
    hi = max(input_size - 0.5, c + size / 2, n + size / 2) + 8
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.add_patch(Rectangle((-0.5, -0.5), input_size, input_size, facecolor="#f3f3f3",
                           edgecolor="#333"))
    xs = [x for x in centres for _ in centres]
    ax.scatter(xs, centres * side, s=max(0.3, min(6.0, rf.jump / 3)), color="#888", linewidths=0)
    ax.add_patch(Rectangle((n - size / 2, c - size / 2), size, size, fill=False,
                           edgecolor=COLORS[1], linestyle="--"))
    ax.add_patch(Rectangle((c - size / 2, c - size / 2), size, size, facecolor=COLORS[0],
                           alpha=0.25, edgecolor=COLORS[0]))
    ax.plot([c], [c], "o", color=COLORS[3], markersize=4)
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_aspect("equal")
    ax.set_title(f"{layer}: field {size} px, jump {rf.jump} px", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def receptive_field_figure(fields: Mapping[str, Mapping[str, Any]], sides: Mapping[str, int],
                           input_size: int, default: tuple[str, str]) -> Interactive:
    """A unit's receptive field and its neighbours' centres over the input, as the reader picks a layer.

    `fields` maps a variant to `googlenet.receptive.receptive_fields` of its network (layers named
    "lrn..." are left out: they leave the field as it is); `sides` gives each layer's map side.
    """
    data = {
        "input": input_size, "default": {"variant": default[0], "layer": default[1]},
        "colors": list(COLORS),
        "variants": {v: [{"name": n, "size": rf.size, "jump": rf.jump, "start": rf.start,
                          "side": sides[n]}
                         for n, rf in layers.items() if not n.startswith("lrn")]
                     for v, layers in fields.items()},
    }
    rf = fields[default[0]][default[1]]
    png = _field_png(default[1], rf, sides[default[1]], input_size)
    caption = (
        f"The {input_size}x{input_size} input image (grey square), the centres of the chosen "
        "layer's units (dots, one jump apart from the centre of unit 0's field; the max pools "
        "have no padding, so the grid is not centred on the image), the receptive field of one "
        "unit (blue; in the HTML book, click it or use the arrow keys to move it) and of a "
        "neighbour (dashed). Where a field reaches past the image it covers the "
        "convolutions' zero padding or the part of a max-pool window that hangs past the edge. "
        "Sizes, jumps and centres from <code>googlenet.receptive.receptive_fields</code>."
    )
    text = f"Receptive field figure ({default[1]}: {rf.size} px, jump {rf.jump} px)"
    return Interactive(figure_html("receptive_field", data, png, caption), png, text)


# --------------------------------------------------------------------------- the microscope
MICROSCOPE_FILES = "_static/microscope/"  # where the HTML book serves book/results/microscope/


def _microscope_png(folder: Path, layer: str) -> bytes:
    """One layer of the microscope, drawn from its files: each channel's render over its strongest
    test image."""
    record = json.loads((folder / "microscope.json").read_text())
    channels = record["layers"][layer]["channels"]
    size = record["image_size"]
    fig, axes = plt.subplots(2, len(channels), figsize=(0.62 * len(channels), 1.5),
                             gridspec_kw={"wspace": 0.05, "hspace": 0.05}, squeeze=False)
    for j, c in enumerate(channels):
        renders = plt.imread(folder / f"{c['sheet']}.jpg")  # a row per channel: main render first
        images = plt.imread(folder / f"{c['sheet']}.png")
        side = images.shape[1] // (record["strongest"] + record["weakest"])
        r = c["row"]
        axes[0, j].imshow(renders[r * size:(r + 1) * size, :size], cmap="gray", vmin=0, vmax=255)
        axes[1, j].imshow(images[r * side:(r + 1) * side, :side], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"{c['channel']}\n{c['branch']}", fontsize=5)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{layer}: render (top) and strongest test image of each channel", fontsize=7)
    return png_bytes(fig)


def microscope_figure(folder: Path, layer: str) -> Interactive:
    """The microscope of ``python -m googlenet.microscope``'s output ``folder``: in the HTML book a
    viewer of every layer (it fetches the files the book serves); elsewhere a picture of ``layer``."""
    png = _microscope_png(folder, layer)
    caption = (
        "Choose a layer and a branch, click a channel: its main render (large), four diverse "
        "renders, its eight strongest and four weakest of the 10,000 test images (ranked by the "
        "channel's mean before its ReLU) and its mean response, after the ReLU, to each class. "
        "Renders and test images are drawn as the chapter draws Fashion-MNIST: dark is high."
    )
    text = f"The microscope ({layer} shown; browsable in the HTML book)"
    return Interactive(figure_html("microscope", {"files": MICROSCOPE_FILES, "layer": layer}, png,
                                   caption), png, text)
