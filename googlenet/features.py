"""Look inside a live GoogLeNet: capture intermediate outputs with hooks, and draw the network.

:func:`capture` records what named submodules output during one forward pass (forward hooks,
removed afterwards); :func:`capture_branches` does so for all 36 Inception branches;
:func:`trace` lists the top-level layers in the order they run; :func:`draw_network` draws that
trace with matplotlib, reading every label from the modules themselves; :func:`draw_inception`
draws one Inception module (the paper's Figure 2) the same way.
"""

from __future__ import annotations

import copy
from itertools import pairwise
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .hooks import hooked, recording
from .model import ConvBlock, GoogLeNet, Inception, InceptionAux

BRANCHES = ("branch1", "branch2", "branch3", "branch4")


class Stage(NamedTuple):
    """One top-level layer as it ran: its attribute name, the module, and its output shape (C, H, W)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]


def inception_names(model: nn.Module) -> list[str]:
    """Names of the model's top-level Inception modules, in registration order (3a ... 5b)."""
    return [name for name, m in model.named_children() if isinstance(m, Inception)]


def branch_names(model: nn.Module) -> list[str]:
    """Dotted names of every Inception branch, e.g. ``"inception3a.branch2"`` (36 for GoogLeNet)."""
    return [f"{name}.{b}" for name in inception_names(model) for b in BRANCHES]


@torch.no_grad()
def capture(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, Tensor]:
    """Outputs of the named submodules for input ``x``, from one eval-mode forward pass.

    Outputs are cloned when captured: a later in-place operation (GoogLeNet's ReLUs are in
    place) would otherwise change them. The training flag is restored and the hooks removed.
    """
    with recording(model, names, clone=True) as outputs:
        model(x)
    return {name: outputs[name] for name in names}


def capture_branches(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Outputs of all four branches of every Inception module for input ``x``."""
    return capture(model, x, branch_names(model))


@torch.no_grad()
def trace(model: GoogLeNet, input_size: int = 224) -> list[Stage]:
    """Top-level layers in execution order, auxiliary heads included, for one square input.

    The pass runs in training mode (so the auxiliary heads run) on a copy of the model, so
    batch-norm statistics of ``model`` are left untouched.
    """
    probe = copy.deepcopy(model)
    modules = dict(model.named_children())
    order: list[Stage] = []

    def seen(name: str, output: Tensor) -> None:
        order.append(Stage(name, modules[name], tuple(output.shape[1:])))

    with hooked(probe, dict.fromkeys(modules, seen), train=True):
        probe(torch.zeros(2, probe.in_channels, input_size, input_size))  # 2: batch norm needs > 1
    return order


def _conv_label(block: ConvBlock) -> str:
    k, s = block.conv.kernel_size[0], block.conv.stride[0]
    return f"{k}x{k}" + (f"/{s}" if s > 1 else "") + f" conv, {block.conv.out_channels}"


def _layer_label(m: nn.Module) -> str:
    if isinstance(m, ConvBlock):
        return _conv_label(m) + (" + BN" if isinstance(m.bn, nn.BatchNorm2d) else "")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = m.kernel_size, m.stride
        return f"{type(m).__name__[:3].lower()} pool {k}x{k}/{s}"
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return "global avg pool"
    if isinstance(m, nn.LocalResponseNorm):
        return "local response norm"
    if isinstance(m, nn.Dropout):
        return f"dropout {m.p:.0%}"
    if isinstance(m, nn.Linear):
        return f"linear {m.in_features}->{m.out_features}"
    return type(m).__name__


def _branch_label(branch: nn.Module) -> str:
    parts = []
    for layer in (branch if isinstance(branch, nn.Sequential) else [branch]):
        if isinstance(layer, ConvBlock):
            k = layer.conv.kernel_size[0]
            parts.append(f"{k}x{k} ({layer.conv.out_channels})")
        elif isinstance(layer, nn.MaxPool2d):
            parts.append(f"pool {layer.kernel_size}x{layer.kernel_size}")
    return "\n".join(parts)


def _aux_label(aux: InceptionAux) -> str:
    return (f"auxiliary classifier\n{_layer_label(aux.pool)} -> {_conv_label(aux.conv)}\n"
            f"fc {aux.fc1.in_features}->{aux.fc1.out_features}, dropout {aux.dropout.p:.0%}, "
            f"fc ->{aux.fc2.out_features}")


_COLOURS = {"conv": "#9ecae1", "pool": "#fdd0a2", "norm": "#d9d9d9", "inception": "#a1d99b",
            "linear": "#fc9272", "aux": "#dadaeb"}


def _colour(m: nn.Module) -> str:
    if isinstance(m, ConvBlock):
        return _COLOURS["conv"]
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return _COLOURS["pool"]
    if isinstance(m, nn.Linear):
        return _COLOURS["linear"]
    return _COLOURS["norm"]


def draw_network(model: GoogLeNet, input_size: int = 224, ax=None):
    """Draw the network top to bottom from :func:`trace`: one row per layer, Inception modules as
    their four branches, auxiliary heads to the side; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    stages = [s for s in trace(model, input_size) if not isinstance(s.module, nn.Identity)]
    main = [s for s in stages if not isinstance(s.module, InceptionAux)]
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.62 * len(main) + 1))
    row = {s.name: -i for i, s in enumerate(main)}

    def box(x, y, w, text, colour, fontsize=8, h=0.72):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="0.3", linewidth=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)

    for s in main:
        y = row[s.name]
        if isinstance(s.module, Inception):
            for j, b in enumerate(BRANCHES):
                box(-3.3 + 2.2 * j, y, 2.1, _branch_label(getattr(s.module, b)), _COLOURS["inception"],
                    fontsize=6.5, h=0.8)
        else:
            box(0, y, 4.2, _layer_label(s.module), _colour(s.module))
        ax.text(-4.9, y, s.name, ha="right", va="center", fontsize=8, family="monospace")
        ax.text(4.9, y, "x".join(map(str, (*s.shape[1:], s.shape[0]))) if len(s.shape) == 3
                else str(s.shape[0]), ha="left", va="center", fontsize=8, color="0.25")
    for a, b in pairwise(main):
        ax.annotate("", xy=(0, row[b.name] + 0.42), xytext=(0, row[a.name] - 0.42),
                    arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8))
    for i, s in enumerate(stages):
        if isinstance(s.module, InceptionAux):
            source = next(p for p in reversed(stages[:i]) if not isinstance(p.module, InceptionAux))
            y = row[source.name]
            box(10.2, y, 5.2, f"{s.name}: " + _aux_label(s.module), _COLOURS["aux"], fontsize=7, h=1.0)
            ax.annotate("", xy=(7.55, y), xytext=(6.7, y),
                        arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8))
    ax.set_xlim(-7.5, 13)
    ax.set_ylim(-len(main) + 0.4, 1.1)
    ax.text(4.9, 0.75, "output (H x W x C)", fontsize=8, color="0.25")
    ax.axis("off")
    return ax


def _inception_layer(m: nn.Module) -> tuple[str, str] | None:
    """Label and colour of one layer in a branch of :func:`draw_inception`; None for ReLU, BN etc."""
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0]
        colours = {1: "#ffffb2", 3: "#fdcc8a", 5: "#fc8d59"}
        return f"{k}x{k} conv, {m.out_channels}", colours.get(k, "#e34a33")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        return f"{k}x{k} {type(m).__name__[:3].lower()} pool", _COLOURS["pool"]
    return None


def draw_inception(module: nn.Module, ax=None, title: str | None = None):
    """Draw an Inception module (paper's Figure 2) from its branch1-4 layers; returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    branches = [getattr(module, b) for b in BRANCHES]
    layers = [[lab for m in b.modules() if (lab := _inception_layer(m))] for b in branches]
    convs = [[m for m in b.modules() if isinstance(m, nn.Conv2d)] for b in branches]
    c_in = next(c[0].in_channels for c in convs if c)
    c_out = sum(c[-1].out_channels if c else c_in for c in convs)
    depth = max(2, *map(len, layers))  # at least two rows, so naive and reduced modules line up
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.8 * depth + 1.6))

    def box(x, y, w, text, colour):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.3), w, 0.6, boxstyle="round,pad=0.03",
                                    facecolor=colour, edgecolor="0.3", linewidth=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8))

    top = depth + 1
    box(0, 0, 6.3, f"previous layer: {c_in} channels", _COLOURS["norm"])
    box(0, top, 6.3, f"filter concatenation: {c_out} channels", _COLOURS["inception"])
    for j, column in enumerate(layers):
        x = -2.4 + 1.6 * j
        arrow(x, 0.33, x, 0.67)
        for i, (text, colour) in enumerate(column, start=1):  # bottom to top, as in the paper
            box(x, i, 1.45, text, colour)
            if i > 1:
                arrow(x, i - 0.67, x, i - 0.33)
        arrow(x, len(column) + 0.33, x, top - 0.33)
    ax.set_xlim(-3.3, 3.3)
    ax.set_ylim(-0.5, top + 0.5)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax
