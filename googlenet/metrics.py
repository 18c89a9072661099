"""Measuring a model on a dataset: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    per_image: bool = False,
    flip: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix of ``model`` (in eval mode) on ``loader``.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``. Under
    ``torch.distributed`` each rank sees its shard and the counts are summed over ranks.
    ``per_image=True`` also returns, in the loader's order, each image's ``predictions`` and
    ``margins`` (its top logit minus the runner-up: near 0, rounding can flip the prediction);
    under ``torch.distributed`` those are this rank's images only. ``flip=True`` is test-time
    augmentation: the logits are the mean of the image's and its mirror image's.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    predictions, margins = [], []
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(device.type, amp_dtype) if amp_dtype else contextlib.nullcontext()
        with autocast:
            logits = model(x).float()
            if flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        pairs = y * num_classes + logits.argmax(1)  # (true, predicted) as one index
        confusion += torch.bincount(pairs, minlength=num_classes**2).view_as(confusion)
        if per_image:
            top2 = logits.topk(2, dim=1)
            predictions.append(top2.indices[:, 0])
            margins.append(top2.values[:, 0] - top2.values[:, 1])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    model.train(was_training)
    result = summarize(confusion.cpu(), loss_sum.item())
    if per_image:
        result["predictions"] = torch.cat(predictions).tolist()
        result["margins"] = [round(m, 5) for m in torch.cat(margins).tolist()]
    return result


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
