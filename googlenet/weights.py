"""Trained weights and the builder, as torchvision's: ``googlenet(weights=GoogLeNet_Weights.DEFAULT)``.

:class:`GoogLeNet_Weights` is a torchvision ``WeightsEnum``: each member says where its file is
(``url``), how to prepare an image for it (``transforms()``) and what it is (``meta``, with
torchvision's keys: ``categories``, ``num_params``, ``min_size``, ``recipe``, ``_metrics``, ``_ops``,
``_file_size``, ``_docs``). ``DEFAULT`` is the one to start from. Files are fetched with
:func:`torch.hub.load_state_dict_from_url` into torch's hub cache (``~/.cache/torch/hub/checkpoints``),
and the SHA-256 prefix in the file name is checked on download. The environment variable
``GOOGLENET_WEIGHTS_URL`` replaces :data:`RELEASE` (a fork's releases, a mirror, or a ``file://`` folder).

In a clone of the repository, the committed reference runs are used instead, with no download: see
"The clone's offline path" below, the one place the library knows the clone's layout. Publishing a
retrained reference run: ``python book/release_weights.py DIR`` (it prints the hashes to write here).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torchvision.models import GoogLeNet_Weights as TorchvisionWeights
from torchvision.models import Weights, WeightsEnum

from .checkpoint import CheckpointError, check_state_dict, evaluation_weights, validate_state
from .data import FASHION_MNIST_CLASSES, STATS, eval_transform
from .errors import NotFoundError
from .model import GoogLeNet
from .table import table1

RELEASE = "https://github.com/googlenet-book/googlenet-book/releases/download/weights-v1"
AUX_HEADS = ("aux1.", "aux2.")  # the auxiliary heads' parameter names start so


def _facts(model_kwargs: dict[str, Any], image_size: int) -> dict[str, Any]:
    """``num_params``, ``min_size`` and ``_ops`` (GMACs per image), measured on a weightless model."""
    with torch.device("meta"):
        model = GoogLeNet(**model_kwargs)
    return {"num_params": sum(p.numel() for p in model.parameters()),
            "min_size": (model.min_input_size,) * 2,
            "_ops": round(sum(row.macs for row in table1(model, image_size)) / 1e9, 3)}


def _reference(run: str, sha256: str, image_size: int, stem: str, acc: float, trained: float,
               file_size: float, command: str) -> Weights:
    """A reference run of the book, trained on Fashion-MNIST (28x28 grayscale, upsampled for 96 px)."""
    mean, std = STATS["fashion_mnist"]
    model_kwargs = {"num_classes": len(FASHION_MNIST_CLASSES), "variant": "torchvision",
                    "aux_logits": False, "in_channels": 1, "stem": stem}
    return Weights(
        url=f"googlenet_{run}-{sha256}.pt",
        transforms=partial(eval_transform, image_size, mean, std, resize=image_size, in_channels=1),
        meta={
            "categories": list(FASHION_MNIST_CLASSES),
            **_facts(model_kwargs, image_size),
            "image_size": image_size,
            "model_kwargs": model_kwargs,
            "recipe": command,
            # float32 evaluation of these weights on the 10,000 test images (evaluation.json);
            # "trained" is what the run recorded at its end, in bfloat16
            "_metrics": {"Fashion-MNIST": {"acc@1": acc, "acc@1 (recorded in training)": trained}},
            "_file_size": file_size,  # MiB
            "_docs": f"The book's reference run {run!r}: the torchvision layout (batch norm), {stem} "
                     f"stem, trained from scratch on Fashion-MNIST at {image_size} px on a 2-core CPU.",
        },
    )


class GoogLeNet_Weights(WeightsEnum):  # noqa: N801 (torchvision's spelling)
    """The weights :func:`googlenet` can load; ``DEFAULT`` is the one to start from.

    ``DEFAULT`` is ``FASHION_MNIST_SMALL``: the most accurate of the book's runs and the quickest to
    run (28 px). ``FASHION_MNIST_96`` keeps the paper's ImageNet stem; ``IMAGENET1K_V1`` is
    torchvision's ImageNet file, loaded into this package's torchvision layout.
    """

    FASHION_MNIST_SMALL = _reference(
        "fashion_mnist_small", "6c65360d", 28, "small", 94.15, 94.17, 10.811,
        "python -m googlenet.train --dataset fashion_mnist --data-root data --variant torchvision "
        "--stem small --epochs 30 --batch-size 128 --lr 0.1 --amp bf16 --channels-last --average ema "
        "--time-limit 2400 --seed 0 --no-progress --out-dir runs/fashion_mnist_small")
    FASHION_MNIST_96 = _reference(
        "fashion_mnist_96", "21c77501", 96, "imagenet", 93.14, 93.22, 10.816,
        "python -m googlenet.train --dataset fashion_mnist --data-root data --image-size 96 "
        "--variant torchvision --stem imagenet --epochs 10 --batch-size 128 --lr 0.1 --amp bf16 "
        "--channels-last --time-limit 3600 --seed 0 --out-dir runs/fashion_mnist_96")
    IMAGENET1K_V1 = Weights(
        url=TorchvisionWeights.IMAGENET1K_V1.url,
        transforms=TorchvisionWeights.IMAGENET1K_V1.transforms,
        meta={**TorchvisionWeights.IMAGENET1K_V1.meta, "image_size": 224,
              "model_kwargs": {"num_classes": 1000, "variant": "torchvision", "in_channels": 3,
                               "stem": "imagenet", "transform_input": True},
              "_docs": "torchvision's ImageNet weights (ported from the paper's network by Google), "
                       "loaded into the torchvision layout of this package."},
    )
    DEFAULT = FASHION_MNIST_SMALL

    @property
    def url(self) -> str:
        """Where the file is downloaded from (a reference run's under :func:`release`)."""
        url = self.value.url
        return url if "://" in url else f"{release()}/{url}"

    @classmethod
    def verify(cls, obj: Any) -> Any:
        """``obj`` as a member: a member, its name, ``"GoogLeNet_Weights.NAME"``, or None (as torchvision)."""
        if type(obj) is str and obj.replace(f"{cls.__name__}.", "") not in cls.__members__:
            raise KeyError(f"unknown weights {obj!r}; expected one of {', '.join(cls.__members__)}")
        return super().verify(obj)

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The weights as a state dict, as torchvision's (``progress=``, ``check_hash=``...): from the
        clone if it has them, else downloaded once into torch's hub cache."""
        local = committed_file(self)
        if local is not None:
            state = torch.load(local, map_location="cpu", weights_only=True)
        else:
            state = _download(self.url, *args, **kwargs)
        if reference_run(self) is None:  # torchvision's file: a plain state dict
            return state
        return evaluation_weights(validate_state(state, self.url))


def _download(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``torch.hub.load_state_dict_from_url`` (safe loader); a failed hash check is a CheckpointError."""
    try:
        return torch.hub.load_state_dict_from_url(url, *args, **{"weights_only": True, **kwargs})
    except RuntimeError as e:
        if "invalid hash value" not in str(e):
            raise
        raise CheckpointError(f"refused {url}: its SHA-256 does not start with {_hash_prefix(url)} "
                              "(a damaged or substituted download)") from None

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


# The clone's offline path. A clone of the repository holds the reference runs the book trained, one
# folder each under REFERENCE_DIR (book/results/<run>/model.pt); a member's release file is named
# googlenet_<run>-<SHA-256 prefix>.pt after its run. Where the folder exists, the builder reads the
# committed file (after checking its hash) instead of downloading; elsewhere (an installed wheel) it
# downloads. Nothing else in the library knows where the clone keeps them.
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "book" / "results"


def reference_run(weights: GoogLeNet_Weights) -> str | None:
    """The reference run a member's file comes from (``"fashion_mnist_96"``), or None (torchvision's)."""
    name = weights.value.url
    return name.removeprefix("googlenet_").rsplit("-", 1)[0] if "://" not in name else None


def reference_checkpoint(name: str) -> Path:
    """The committed checkpoint of a reference run, both the torchvision layout (batch norm):
    ``"fashion_mnist_small"`` (small stem, 28 px) or ``"fashion_mnist_96"`` (ImageNet stem, 96 px).

    They ship with the repository, not with a pip-installed package: there, use the builder
    (``googlenet.googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96)``), which downloads them.
    """
    path = REFERENCE_DIR / name / "model.pt"
    if not path.is_file():
        known = sorted(p.parent.name for p in REFERENCE_DIR.glob("*/model.pt"))
        hint = (f"known: {', '.join(known)}" if known else "reference runs ship with a clone of the "
                "repository; outside one, googlenet.googlenet(weights=...) downloads them")
        raise NotFoundError(f"no reference checkpoint {name!r} at {path}; {hint}")
    return path


def committed_file(weights: GoogLeNet_Weights) -> Path | None:
    """The committed file of these weights in a clone of the repository, or None outside one.

    Raises :class:`CheckpointError` if the committed file is not the one the member names (a retrained
    reference run needs its new hash written here: ``python book/release_weights.py DIR``).
    """
    run = reference_run(weights)
    path = REFERENCE_DIR / run / "model.pt" if run else None
    if path is None or not path.is_file():
        return None
    digest, prefix = sha256_of(path), _hash_prefix(weights.url)
    if not digest.startswith(prefix):
        raise CheckpointError(f"{path} has SHA-256 {digest[:12]}..., {weights.name} expects {prefix}...: "
                              "update googlenet/weights.py with `python book/release_weights.py DIR`")
    return path


def _overwrite_named_param(kwargs: dict[str, Any], name: str, value: Any) -> None:
    """Set ``kwargs[name]`` to what the weights need; another value given is an error (torchvision's rule)."""
    if name in kwargs and kwargs[name] != value:
        raise ValueError(f"The parameter '{name}' expected value {value} but got {kwargs[name]} instead.")
    kwargs[name] = value


def googlenet(
    *, weights: GoogLeNet_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> GoogLeNet:
    """GoogLeNet, as ``torchvision.models.googlenet`` builds it: untrained, or with ``weights``.

    ``kwargs`` go to :class:`GoogLeNet` (``num_classes``, ``variant``, ``stem``, ``dropout_aux``,
    ``blocks``...). With weights, torchvision's rules: the architecture is theirs (a keyword that
    contradicts it raises ``ValueError``; ``transform_input`` may be switched off), and
    ``aux_logits=True`` adds auxiliary heads the weights did not train, with a warning. To train on
    other classes, load the weights and replace ``model.fc`` (see the chapter "Make it yours").
    """
    weights = GoogLeNet_Weights.verify(weights)
    if weights is None:
        return GoogLeNet(**kwargs)
    with_aux = kwargs.get("aux_logits", False)
    for name, value in weights.meta["model_kwargs"].items():
        if name == "transform_input":
            kwargs.setdefault(name, value)
        elif name != "aux_logits":
            _overwrite_named_param(kwargs, name, value)
    _overwrite_named_param(kwargs, "aux_logits", True)
    model = GoogLeNet(**{**kwargs, "aux_logits": with_aux})
    # the file's auxiliary heads (torchvision's has untrained ones; the book's have none) only when asked
    # for, and a fresh one where the file has none
    heads = {k: v for k, v in model.state_dict().items() if k.startswith(AUX_HEADS)}
    state = {**heads, **{k: v for k, v in weights.get_state_dict(progress=progress, check_hash=True).items()
                         if not k.startswith(AUX_HEADS) or k in heads}}
    if with_aux:
        warnings.warn("auxiliary heads in the pretrained googlenet model are NOT pretrained, so make sure "
                      "to train them", stacklevel=2)
    check_state_dict(model, state, what=f"{weights!r}")
    model.load_state_dict(state)
    return model
