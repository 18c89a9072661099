"""The ``python -m googlenet.evaluate`` command line: a checkpoint's accuracy on its test split.

``--split val`` measures a run trained with ``--val-split`` on the training images it held out
instead, to compare tuning choices (test-time augmentation, say) without looking at the test set.

::

    python -m googlenet.evaluate --checkpoint runs/cifar10/checkpoint.pt

The measuring itself is :func:`googlenet.metrics.evaluate`.
"""

from __future__ import annotations

import sys
from argparse import BooleanOptionalAction
from pathlib import Path
from typing import Any

from .checkpoint import load_model
from .cli import Parser, checked, command_line, run_main
from .config import AT_LEAST_1
from .data import hold_out, load_data
from .device import pick_device
from .errors import ConfigError
from .files import write_json
from .loaders import make_loader
from .metrics import evaluate, report
from .provenance import provenance


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure a checkpoint on its dataset's test split; print the report, save the confusion matrix."""
    parser = Parser(
        prog="python -m googlenet.evaluate",
        description="Measure a trained GoogLeNet on its dataset's test split: overall accuracy, accuracy "
                    "per class, and a confusion-matrix picture (which classes get mistaken for which).",
    )
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="checkpoint.pt written by `python -m googlenet.train` (in its --out-dir)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding the dataset (default: the one used for training)")
    parser.add_argument("--batch-size", type=checked(int, AT_LEAST_1), default=256,
                        help="images per batch (default: 256)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (default)")
    parser.add_argument("--subset", type=checked(int, AT_LEAST_1), default=None,
                        help="evaluate only this many test images (a fixed random sample), for a quick look")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="test: the dataset's test split (default); val: the training images the run "
                             "held out with --val-split")
    parser.add_argument("--tta", action=BooleanOptionalAction, default=None,
                        help="flip test-time augmentation: average each image's logits with its mirror "
                             "image's (default: as the run was trained, its --tta)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to save the confusion matrix image (default: next to the checkpoint); "
                             "the same name with .json gets the numbers, each image's prediction and "
                             "margin, and the command, machine and versions")
    args = parser.parse_args(argv)

    from .plots import plot_confusion_matrix

    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, map_location=device)
    config = meta["history"]["config"] if meta.get("history") else {}
    root = args.data_root or config.get("data_root")
    val = args.split == "val"
    if val and not config.get("val_split"):
        raise ConfigError(f"--split val: {args.checkpoint} was trained without --val-split, so it held no "
                          "training images out")
    if val and args.subset:
        raise ConfigError("--subset samples the test split; --split val measures the run's held-out images")
    subset = config.get("subset") if val else args.subset  # the run's own, to hold out the same images
    data = load_data(meta["dataset"], root, image_size=meta["image_size"], subset=subset,
                     mean=meta["mean"], std=meta["std"])
    if val:
        data = hold_out(data, config["val_split"])
    loader = make_loader(data, "test", args.batch_size, device)
    flip = args.tta if args.tta is not None else bool(config.get("tta"))
    metrics = evaluate(model, loader, len(meta["classes"]), per_image=True, flip=flip)  # in float32
    print(report(metrics, meta["classes"]))

    out = args.out or args.checkpoint.with_name("confusion_matrix.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    ax = plot_confusion_matrix(metrics["confusion"], meta["classes"])
    ax.figure.savefig(out, dpi=150, bbox_inches="tight")
    command = command_line("googlenet.evaluate", sys.argv[1:] if argv is None else argv)
    record = {**metrics, "precision": "float32", "split": args.split, "tta": flip, "subset": args.subset,
              **provenance(command)}
    write_json(record, out.with_suffix(".json"))
    print(f"confusion matrix saved to {out} (numbers in {out.with_suffix('.json')})")
    return metrics


if __name__ == "__main__":
    run_main(main)
