"""Evaluate a trained model: accuracy, per-class accuracy and a confusion matrix.

Command line (``--help`` for all options)::

    python -m googlenet.evaluate --checkpoint runs/cifar10/checkpoint.pt
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import load_model
from .data import load_data, make_loader


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix of ``model`` (in eval mode) on ``loader``.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``. Under
    ``torch.distributed`` each rank sees its shard and the counts are summed over ranks.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(device.type, amp_dtype) if amp_dtype else contextlib.nullcontext()
        with autocast:
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        pairs = y * num_classes + logits.argmax(1)  # (true, predicted) as one index
        confusion += torch.bincount(pairs, minlength=num_classes**2).view_as(confusion)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    model.train(was_training)
    return summarize(confusion.cpu(), loss_sum.item())


def summarize(confusion: Tensor, loss_sum: float | None = None) -> dict[str, Any]:
    """Turn a confusion matrix (and summed loss) into the metrics dict :func:`evaluate` returns."""
    total = int(confusion.sum())
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    return {
        "loss": loss_sum / max(total, 1) if loss_sum is not None else None,
        "accuracy": float(confusion.diag().sum()) / max(total, 1),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "count": total,
    }


def report(metrics: dict[str, Any], classes: list[str]) -> str:
    """A plain-text table: overall accuracy, then each class's accuracy and image count."""
    counts = [sum(row) for row in metrics["confusion"]]
    width = max(len(c) for c in classes)
    lines = [f"accuracy {100 * metrics['accuracy']:.2f}% on {metrics['count']} images"]
    if metrics["loss"] is not None:
        lines.append(f"loss     {metrics['loss']:.4f}")
    lines += [f"  {c:<{width}}  {100 * a:6.2f}%  ({n} images)"
              for c, a, n in zip(classes, metrics["per_class_accuracy"], counts, strict=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The ``python -m googlenet.evaluate`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m googlenet.evaluate",
        description="Measure a trained GoogLeNet on its dataset's test split: overall accuracy, accuracy "
                    "per class, and a confusion-matrix picture (which classes get mistaken for which).",
    )
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="checkpoint.pt written by `python -m googlenet.train` (in its --out-dir)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding the dataset (default: the one used for training)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default: 256)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (default)")
    parser.add_argument("--subset", type=int, default=None,
                        help="evaluate only this many test images (a fixed random sample), for a quick look")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to save the confusion matrix image (default: next to the checkpoint)")
    args = parser.parse_args(argv)

    from .plots import plot_confusion_matrix
    from .train import pick_device

    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, map_location=device)
    config = meta["history"]["config"] if meta.get("history") else {}
    root = args.data_root or config.get("data_root")
    data = load_data(meta["dataset"], root, image_size=meta["image_size"], subset=args.subset,
                     mean=meta["mean"], std=meta["std"])
    metrics = evaluate(model, make_loader(data, "test", args.batch_size, device), len(meta["classes"]))
    print(report(metrics, meta["classes"]))

    out = args.out or args.checkpoint.with_name("confusion_matrix.png")
    ax = plot_confusion_matrix(metrics["confusion"], meta["classes"])
    ax.figure.savefig(out, dpi=150, bbox_inches="tight")
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=1))
    print(f"confusion matrix saved to {out} (numbers in {out.with_suffix('.json')})")
    return metrics


if __name__ == "__main__":
    main()
