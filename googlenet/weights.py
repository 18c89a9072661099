"""Trained weights and the torchvision-style builder: ``googlenet(weights=GoogLeNet_Weights.X)``.

Each member of :class:`GoogLeNet_Weights` says where its file is, how to prepare an image for it
(``transforms()``) and what it is (``meta``: categories, parameter count, metrics, the command that
trained it). Files are fetched with :func:`torch.hub.load_state_dict_from_url` into torch's hub cache
(``~/.cache/torch/hub/checkpoints``), and the SHA-256 prefix in the file name is checked on download.
From a clone of the repository the committed files in ``book/results/`` are used, with no download.

The environment variable ``GOOGLENET_WEIGHTS_URL`` replaces :data:`RELEASE` (a fork's releases, a
mirror, or a ``file://`` folder). Publishing a new reference run: ``python -m googlenet.weights DIR``
copies each committed file to ``DIR`` under its release name (``googlenet_<run>-<sha256 prefix>.pt``),
for upload to :data:`RELEASE`, and prints the hash prefixes to write below.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import GoogLeNet_Weights as TorchvisionWeights

from .checkpoint import REFERENCE_DIR, CheckpointError, model_from_state, validate_state
from .data import FASHION_MNIST_CLASSES, eval_transform
from .model import GoogLeNet

RELEASE = "https://github.com/googlenet-book/googlenet-book/releases/download/weights-v1"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.286,), (0.353,)


@dataclass(frozen=True)
class Weights:
    """One set of trained weights: where its file is, how to prepare inputs, and what it is."""

    url: str  # a file name alone is one of the release's assets (see :func:`release`)
    transforms: Any  # a callable returning the evaluation transform
    meta: dict[str, Any] = field(default_factory=dict)
    run: str | None = None  # the reference run in book/results/ whose model.pt this is, in a clone


def _reference(run: str, sha256: str, image_size: int, stem: str, acc: float, trained: float,
               command: str) -> Weights:
    """A reference run of the book, trained on Fashion-MNIST (28x28 grayscale, upsampled for 96 px)."""
    return Weights(
        url=f"googlenet_{run}-{sha256}.pt",
        transforms=partial(eval_transform, image_size, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                           resize=image_size, in_channels=1),
        meta={
            "categories": list(FASHION_MNIST_CLASSES),
            "num_params": 5_601_322 if stem == "small" else 5_603_882,
            "min_size": (8, 8) if stem == "small" else (15, 15),
            "image_size": image_size,
            "model_kwargs": {"num_classes": 10, "variant": "torchvision", "aux_logits": False,
                             "in_channels": 1, "stem": stem},
            # float32 evaluation of these weights on the 10,000 test images (evaluation.json);
            # "trained" is what the run recorded at its end, in bfloat16
            "metrics": {"Fashion-MNIST": {"acc@1": acc, "acc@1 (recorded in training)": trained}},
            "recipe": command,
            "_docs": f"The book's reference run {run!r}: the torchvision layout (batch norm), {stem} "
                     f"stem, trained from scratch on Fashion-MNIST at {image_size} px on a 2-core CPU.",
        },
        run=run,
    )


class GoogLeNet_Weights(Enum):  # noqa: N801 (torchvision's spelling)
    """The weights :func:`googlenet` can load (``GoogLeNet_Weights.FASHION_MNIST_96.meta`` etc.)."""

    FASHION_MNIST_SMALL = _reference(
        "fashion_mnist_small", "6c65360d", 28, "small", 94.15, 94.17,
        "python -m googlenet.train --dataset fashion_mnist --data-root data --variant torchvision "
        "--stem small --epochs 30 --batch-size 128 --lr 0.1 --amp bf16 --channels-last --average ema "
        "--time-limit 2400 --seed 0 --no-progress --out-dir runs/fashion_mnist_small")
    FASHION_MNIST_96 = _reference(
        "fashion_mnist_96", "21c77501", 96, "imagenet", 93.14, 93.22,
        "python -m googlenet.train --dataset fashion_mnist --data-root data --image-size 96 "
        "--variant torchvision --stem imagenet --epochs 10 --batch-size 128 --lr 0.1 --amp bf16 "
        "--channels-last --time-limit 3600 --seed 0 --out-dir runs/fashion_mnist_96")
    IMAGENET1K_V1 = Weights(
        url=TorchvisionWeights.IMAGENET1K_V1.url,
        transforms=TorchvisionWeights.IMAGENET1K_V1.transforms,
        meta={**TorchvisionWeights.IMAGENET1K_V1.meta, "image_size": 224,
              "_docs": "torchvision's ImageNet weights (ported from the paper's network by Google), "
                       "loaded into the torchvision layout of this package."},
    )

    @property
    def url(self) -> str:
        url = self.value.url
        return url if "://" in url else f"{release()}/{url}"

    @property
    def meta(self) -> dict[str, Any]:
        return self.value.meta

    def transforms(self) -> nn.Module:
        """The evaluation transform these weights expect (resize, centre crop, normalise)."""
        return self.value.transforms()

    @classmethod
    def verify(cls, weights: GoogLeNet_Weights | str | None) -> GoogLeNet_Weights | None:
        """``weights`` as a member: a member, its name (``"FASHION_MNIST_96"``), or None."""
        if weights is None or isinstance(weights, cls):
            return weights
        if isinstance(weights, str) and weights.removeprefix(f"{cls.__name__}.") in cls.__members__:
            return cls[weights.removeprefix(f"{cls.__name__}.")]
        raise ValueError(f"unknown weights {weights!r}; expected one of {', '.join(cls.__members__)}")


def release() -> str:
    """Where the reference weights are downloaded from: ``GOOGLENET_WEIGHTS_URL`` or :data:`RELEASE`."""
    return os.environ.get("GOOGLENET_WEIGHTS_URL", RELEASE).rstrip("/")


def sha256_of(path: Path) -> str:
    """The hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_prefix(url: str) -> str:
    return url.rsplit("-", 1)[1].split(".")[0]


def committed_file(weights: GoogLeNet_Weights) -> Path | None:
    """The committed file of these weights in a clone of the repository, or None outside one.

    Raises :class:`CheckpointError` if the committed file is not the one the member names (a retrained
    reference run needs its new hash written here: ``python -m googlenet.weights DIR``).
    """
    if weights.value.run is None:
        return None
    path = REFERENCE_DIR / weights.value.run / "model.pt"
    if not path.is_file():
        return None
    digest, prefix = sha256_of(path), _hash_prefix(weights.url)
    if not digest.startswith(prefix):
        raise CheckpointError(f"{path} has SHA-256 {digest[:12]}..., {weights.name} expects {prefix}...: "
                              "update googlenet/weights.py with `python -m googlenet.weights DIR`")
    return path


def load_weights(weights: GoogLeNet_Weights, progress: bool = True) -> dict[str, Any]:
    """The file's contents: from the clone if there is one, else downloaded (hash checked) or cached."""
    local = committed_file(weights)
    if local is not None:
        return torch.load(local, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=progress,
                                                  check_hash=True, weights_only=True)
    except RuntimeError as e:
        if "invalid hash value" not in str(e):
            raise
        raise CheckpointError(f"refused {weights.url}: its SHA-256 does not start with "
                              f"{_hash_prefix(weights.url)} (a damaged or substituted download)") from None


def googlenet(
    *, weights: GoogLeNet_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> GoogLeNet:
    """GoogLeNet, as ``torchvision.models.googlenet`` builds it: untrained, or with ``weights``.

    ``kwargs`` go to :class:`GoogLeNet` (``num_classes``, ``variant``, ``stem``, ``blocks``...). With
    weights, the architecture is theirs: a keyword that contradicts it raises ``ValueError``; to train
    on other classes, load the weights and replace ``model.fc`` (see the chapter "Make it yours").
    """
    weights = GoogLeNet_Weights.verify(weights)
    if weights is None:
        return GoogLeNet(**kwargs)
    if weights is GoogLeNet_Weights.IMAGENET1K_V1:
        architecture = {"num_classes": 1000, "variant": "torchvision", "in_channels": 3,
                        "stem": "imagenet", "transform_input": True}
    else:
        architecture = weights.meta["model_kwargs"]
    for name, value in architecture.items():
        if name in kwargs and kwargs[name] != value:
            raise ValueError(f"{weights.name} needs {name}={value!r}, got {kwargs[name]!r}")
    if weights is GoogLeNet_Weights.IMAGENET1K_V1:
        aux = kwargs.pop("aux_logits", False)
        model = GoogLeNet(**{**architecture, **kwargs, "aux_logits": aux})
        state = load_weights(weights, progress)
        if not aux:  # torchvision's file carries auxiliary heads, which it says were not trained with it
            state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        model.load_state_dict(state, strict=True)
        return model
    state = validate_state(load_weights(weights, progress), weights.url)
    return model_from_state(state, weights.url, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """Copy the committed reference files to ``DIR`` under their release names; print the hashes."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m googlenet.weights DIR  (copies the release assets into DIR)")
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for member in GoogLeNet_Weights:
        if member.value.run is None:
            continue
        path = REFERENCE_DIR / member.value.run / "model.pt"
        prefix = sha256_of(path)[:8]
        target = out / f"googlenet_{member.value.run}-{prefix}.pt"
        shutil.copyfile(path, target)
        print(f"{member.name}: {prefix}  {target}")


if __name__ == "__main__":
    main()
