"""Calibrate and measure predict's "unlike the training images" line for the reference weights.

    python book/calibrate_ood.py                      # every reference run, about 10 minutes on 2 cores
    python book/calibrate_ood.py --runs fashion_mnist_small

For each reference run: :func:`googlenet.ood.fit` on the conv3 channel means of ``--fit`` training
images, the limit set on ``--held-out`` other training images (quantile ``--quantile``), written to
``googlenet/calibration/<run>.json`` (shipped in the wheel, read by ``predict``); then the rates,
written to ``book/results/<run>/ood.json``: the share of the 10,000 Fashion-MNIST test images flagged,
and of :func:`unfamiliar_images` (photographs in colour and in grey, handwritten digits). Images go
through the weights' own transform from PIL images, as ``predict`` prepares them. Book production,
not part of the installed package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from googlenet.data import load_data
from googlenet.files import write_json
from googlenet.ood import LAYERS, Calibration, fit, pooled
from googlenet.provenance import provenance
from googlenet.weights import GoogLeNet_Weights, googlenet, reference_run

PACKAGE = Path(__file__).resolve().parents[1] / "googlenet"
RESULTS = Path(__file__).resolve().parent / "results"
# scikit-image's sample photographs that ship with it (no download), and scikit-learn's two
PHOTOGRAPHS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "coins",
               "clock", "moon", "page", "text", "hubble_deep_field", "immunohistochemistry", "retina", "cell")
CROPS = 7  # random square crops of each photograph, besides the whole


def photographs() -> list[np.ndarray]:
    """The sample photographs of scikit-image and scikit-learn, as (H, W) or (H, W, 3) uint8 arrays."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    return [getattr(skimage.data, name)() for name in PHOTOGRAPHS] + list(load_sample_images().images)


def crops(image: Image.Image, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """The whole image and ``n`` random square crops of a quarter to all of its short side."""
    w, h = image.size
    out = [image]
    for _ in range(n):
        side = int(min(w, h) * rng.uniform(0.25, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(image.crop((left, top, left + side, top + side)))
    return out


def unfamiliar_images(crops_each: int = CROPS, seed: int = 0) -> dict[str, list[Image.Image]]:
    """Images unlike Fashion-MNIST, offline: photographs in colour, the same and the grey ones in grey
    (so that a colour check alone cannot pass), and scikit-learn's 1,797 handwritten digits (white
    on black, like Fashion-MNIST)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    colour, grey = [], []
    for array in photographs():
        for crop in crops(Image.fromarray(array), crops_each, rng):
            if array.ndim == 3:
                colour.append(crop)
            grey.append(crop.convert("L"))
    digits = [Image.fromarray((d * 255 / 16).astype(np.uint8)) for d in load_digits().images]
    return {"colour photographs": colour, "grey photographs": grey, "digits": digits}


def prepared(transform, images: list[Image.Image]) -> torch.Tensor:
    """The images as ``predict`` prepares them."""
    return torch.stack([transform(image.convert("RGB")) for image in images])


def fashion_mnist(transform, images: torch.Tensor) -> torch.Tensor:
    """Fashion-MNIST's uint8 (N, 1, 28, 28) images prepared as image files would be."""
    return prepared(transform, [Image.fromarray(image[0].numpy()) for image in images])


def rates(model: torch.nn.Module, transform, calibration: Calibration) -> dict[str, dict[str, float]]:
    """The share of each image set flagged, and its size: Fashion-MNIST's test split and the others."""
    sets = {"Fashion-MNIST test": fashion_mnist(transform, load_data("fashion_mnist").test.images)}
    sets |= {name: prepared(transform, images) for name, images in unfamiliar_images().items()}
    out = {}
    for name, x in sets.items():
        flagged = calibration.strangeness(pooled(model, x, calibration.layers, logits=False)[1]) > 1
        out[name] = {"flagged": flagged.double().mean().item(), "images": len(x)}
        print(f"  {name}: {out[name]['flagged']:.2%} of {len(x)} flagged", flush=True)
    return out


def calibrate(weights: GoogLeNet_Weights, n_fit: int, n_held_out: int, quantile: float) -> Calibration:
    """Fit on ``n_fit`` training images, set the limit on ``n_held_out`` others (a seeded sample)."""
    model, transform = googlenet(weights=weights).eval(), weights.transforms()
    train = load_data("fashion_mnist").train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit_idx, held_idx = order[:n_fit], order[n_fit:n_fit + n_held_out]
    features = pooled(model, fashion_mnist(transform, train.images[fit_idx]), LAYERS, logits=False)[1]
    held_out = pooled(model, fashion_mnist(transform, train.images[held_idx]), LAYERS, logits=False)[1]
    return fit("Fashion-MNIST", features, train.labels[fit_idx], held_out, quantile)


def main(argv: list[str] | None = None) -> None:
    """Calibrate each run, write its calibration into the package and its rates beside its results."""
    parser = argparse.ArgumentParser(prog="python book/calibrate_ood.py", description=__doc__.split("\n")[0])
    runs = [reference_run(m) for m in GoogLeNet_Weights if reference_run(m)]
    parser.add_argument("--runs", nargs="+", choices=runs, default=runs)
    parser.add_argument("--fit", type=int, default=15_000, help="training images the Gaussians fit")
    parser.add_argument("--held-out", type=int, default=5_000, help="training images that set the limit")
    parser.add_argument("--quantile", type=float, default=0.993,
                        help="share of held-out training images under the limit")
    args = parser.parse_args(argv)
    for weights in GoogLeNet_Weights:
        run = reference_run(weights)
        if run not in args.runs:
            continue
        print(f"{weights!r}: calibrating on {args.fit} + {args.held_out} training images", flush=True)
        calibration = calibrate(weights, args.fit, args.held_out, args.quantile)
        write_json(calibration.to_json(), PACKAGE / "calibration" / f"{run}.json")
        model = googlenet(weights=weights).eval()
        measured = rates(model, weights.transforms(), calibration)
        command = " ".join(["python", "book/calibrate_ood.py", *(sys.argv[1:] if argv is None else argv)])
        write_json({"rates": measured, "layers": list(calibration.layers), "quantile": args.quantile,
                    "fit": args.fit, "held_out": args.held_out, **provenance(command)},
                   RESULTS / run / "ood.json")


if __name__ == "__main__":
    main()
