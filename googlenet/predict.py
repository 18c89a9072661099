"""The ``python -m googlenet.predict`` command line: the top-5 classes of image files, and :func:`predict`.

Command line (``--help`` for all options)::

    python -m googlenet.predict shirt.png boot.jpg --checkpoint runs/fashion_mnist/checkpoint.pt
    python -m googlenet.predict shirt.png --weights FASHION_MNIST_96

With the book's reference weights, an image unlike their training images (a photograph, a digit)
gets one more line saying so (:mod:`googlenet.ood`): the classes listed are then a forced choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from .checkpoint import load_model
from .cli import Parser, checked, run_main
from .config import AT_LEAST_1
from .data import eval_transform
from .device import pick_device
from .ood import Calibration, load_calibration, pooled
from .weights import GoogLeNet_Weights, googlenet, reference_run


def checkpoint_transform(meta: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """How a checkpoint's model sees an image file: resized, centre-cropped to the training size,
    converted to the model's channel count and normalised with the checkpoint's mean and std."""
    return eval_transform(meta["image_size"], meta["mean"], meta["std"], resize=meta["resize"],
                          in_channels=meta["model_kwargs"]["in_channels"])


class Prediction(NamedTuple):
    """One image's most probable classes, and how unlike the training images it is."""

    top: list[tuple[str, float]]  # (class name, probability), most probable first
    strangeness: float | None  # :meth:`Calibration.strangeness`; None without a calibration

    @property
    def unfamiliar(self) -> bool:
        """Whether the image is unlike the training images (strangeness above 1)."""
        return self.strangeness is not None and self.strangeness > 1


@torch.no_grad()
def predict(
    model: nn.Module, prepare: Callable[[Image.Image], torch.Tensor], classes: Sequence[str],
    images: Sequence[str | Path | Image.Image], k: int = 5, calibration: Calibration | None = None,
) -> list[Prediction]:
    """For each image (path or PIL image), its ``k`` most probable classes and, with a
    ``calibration`` (:func:`calibration_of`), how unlike the training images it is.

    ``prepare`` is the weights' evaluation transform (:func:`checkpoint_transform` for a checkpoint,
    ``GoogLeNet_Weights.X.transforms()`` for the builder's weights).
    """
    pil = [img if isinstance(img, Image.Image) else Image.open(img) for img in images]
    batch = torch.stack([prepare(img.convert("RGB")) for img in pil])
    batch = batch.to(next(model.parameters()).device)
    if calibration is None:
        logits, strangeness = model.eval()(batch), [None] * len(batch)
    else:
        logits, features = pooled(model, batch, calibration.layers)
        strangeness = calibration.strangeness(features).tolist()
    probs = logits.softmax(1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    return [Prediction([(classes[i], p) for p, i in zip(ps.tolist(), ids.tolist(), strict=True)], s)
            for ps, ids, s in zip(top.values, top.indices, strangeness, strict=True)]


def calibration_of(weights: GoogLeNet_Weights) -> Calibration | None:
    """The calibration committed for these weights (the book's reference runs), or None."""
    run = reference_run(weights)
    return load_calibration(run) if run else None


def unfamiliar_line(prediction: Prediction, calibration: Calibration) -> str:
    """The line predict prints beside the top classes of an image unlike the training images."""
    return (f"unlike the {calibration.trained_on} training images (strangeness {prediction.strangeness:.1f}, "
            "above 1 is unlike): the classes above are a forced choice")


def main(argv: list[str] | None = None) -> list[Prediction]:
    """The ``python -m googlenet.predict`` command line."""
    parser = Parser(
        prog="python -m googlenet.predict",
        description="Say what a trained GoogLeNet sees in each image: its five most likely classes "
                    "with their probabilities. Any image format Pillow reads works; images are resized "
                    "to the size the model was trained on. With the book's reference weights (--weights "
                    "FASHION_MNIST_SMALL or FASHION_MNIST_96), an image unlike their training images "
                    "(a photograph, a digit) gets one more line saying so.",
        epilog="example: python -m googlenet.predict photo.jpg --checkpoint runs/cifar10/checkpoint.pt",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files to classify")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="checkpoint.pt written by `python -m googlenet.train` (in its --out-dir)")
    source.add_argument("--weights", choices=list(GoogLeNet_Weights.__members__),
                        help="trained weights the package knows (downloaded once into torch's hub cache)")
    parser.add_argument("--top", type=checked(int, AT_LEAST_1), default=5,
                        help="how many classes to list per image (default: 5)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (default)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        parser.error(f"no such image file: {', '.join(missing)}")

    device = pick_device(args.device)
    if args.weights:
        weights = GoogLeNet_Weights[args.weights]
        model, prepare, classes = googlenet(weights=weights).to(device), weights.transforms(), \
            weights.meta["categories"]
        calibration = calibration_of(weights)
    else:
        model, meta = load_model(args.checkpoint, map_location=device)
        prepare, classes, calibration = checkpoint_transform(meta), meta["classes"], None
    results = predict(model, prepare, classes, args.images, k=args.top, calibration=calibration)
    for path, result in zip(args.images, results, strict=True):
        print(path)
        for rank, (name, p) in enumerate(result.top, 1):
            print(f"  {rank}. {name:<20} {100 * p:5.1f}%")
        if result.unfamiliar:
            print(f"  {unfamiliar_line(result, calibration)}")
    return results


if __name__ == "__main__":
    run_main(main, (UnidentifiedImageError,))
