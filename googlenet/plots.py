"""Figures the chapters use: learning curves and confusion matrices."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes


def load_history(history: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A history dict as returned by ``train``, or read from a metrics.json file (or its folder)."""
    if isinstance(history, dict):
        return history
    path = Path(history)
    return json.loads((path / "metrics.json" if path.is_dir() else path).read_text())


def plot_history(history: dict[str, Any] | str | Path, axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Learning curves: loss (left) and accuracy (right) against epochs.

    Lines are the step history (training batches, averaged over ``log_every`` steps); dots are
    the per-epoch test results. Accepts a history dict, a metrics.json path or a run folder.
    Returns the two axes.
    """
    h = load_history(history)
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")[1]
    steps, epochs = h["steps"], h["epochs"]
    panels = ((axes[0], "loss", "test_loss", "loss", 1), (axes[1], "acc", "test_acc", "accuracy (%)", 100))
    for ax, key, test_key, label, scale in panels:
        if steps:
            ax.plot([s["epoch"] for s in steps], [scale * s[key] for s in steps], label="training batches")
        ax.plot([e["at_epoch"] for e in epochs], [scale * e[test_key] for e in epochs], "o-",
                label="test set")
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("loss (training: with auxiliary heads and label smoothing)", fontsize="medium")
    axes[1].set_title("accuracy", fontsize="medium")
    return axes


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str], ax: Axes | None = None,
    normalize: bool = True,
) -> Axes:
    """Confusion matrix as an image: rows are true classes, columns predictions (row-normalised %)."""
    cm = np.asarray(confusion, dtype=float)
    shown = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    n = len(classes)
    if ax is None:
        ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n), layout="constrained")[1]
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    ax.figure.colorbar(im, ax=ax, label="% of the true class" if normalize else "images")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                value = f"{shown[i, j]:.0f}" if normalize else f"{cm[i, j]:.0f}"
                color = "white" if shown[i, j] > 0.6 * shown.max() else "black"
                ax.text(j, i, value, ha="center", va="center", fontsize="small", color=color)
    return ax
