"""Datasets: Fashion-MNIST, CIFAR-10, Imagenette and any ImageFolder tree, found or downloaded.

:func:`load_data` returns both splits with what a model and a checkpoint need to know (classes,
normalisation, image size): in memory for Fashion-MNIST and CIFAR-10, as torchvision datasets of
image files otherwise. Batches come from :mod:`googlenet.loaders`.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2 as T

from .errors import ConfigError, NotFoundError
from .files import write_atomically
from .model import IMAGENET_MEAN, IMAGENET_STD

DATASETS = ("fashion_mnist", "cifar10", "imagenette", "folder")
IN_MEMORY = ("fashion_mnist", "cifar10")

# Where Debian's `dataset-fashion-mnist` package installs the four gzipped idx files. The variable
# names another folder, or none when set empty (a machine without the package: the book's Colab test).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_COPY_VARIABLE = "GOOGLENET_FASHION_MNIST_COPY"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
IMAGENETTE_DIR = "imagenette2"  # torchvision's folder for size="full"
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz"

# Per-channel mean and std of the training images scaled to [0, 1], over every pixel.
# Fashion-MNIST and CIFAR-10: compute_mean_std() on the 60,000 / 50,000 training images
# (tests/test_data.py recomputes the Fashion-MNIST pair). Imagenette is a subset of ImageNet
# and uses ImageNet's statistics, the ones torchvision's pretrained models expect.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenette": (IMAGENET_MEAN, IMAGENET_STD),
}
PAD = {"fashion_mnist": 2, "cifar10": 4}  # pixels of zero padding before the random crop
NATIVE_SIZE = {"fashion_mnist": 28, "cifar10": 32, "imagenette": 224, "folder": 224}
MEAN_STD_SAMPLE = 512  # images read to estimate an ImageFolder tree's statistics
VALIDATION_SEED = 1  # the validation split is the same sample of training images in every run


class DatasetNotFoundError(NotFoundError):
    """A dataset's files are not on disk; the message names the dataset, the path and the remedy."""


def default_root() -> Path:
    """Where datasets live: $GOOGLENET_DATA, else ``<repo>/data`` in a source checkout, else ``./data``."""
    if env := os.environ.get("GOOGLENET_DATA"):
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo / "data" if (repo / "pyproject.toml").is_file() else Path("data")


def canonical_name(name: str) -> str:
    """``"Fashion-MNIST"`` -> ``"fashion_mnist"``; raise on an unknown dataset."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return key


def ensure_fashion_mnist(root: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Make ``<root>/FashionMNIST/raw`` hold the four idx files, gunzipping Debian's copies if needed.

    ``source`` defaults to :func:`offline_copy`. Returns the raw folder. Files that ``source``
    lacks stay missing (the caller then raises :class:`DatasetNotFoundError` or downloads).
    """
    raw = Path(root or default_root()) / "FashionMNIST" / "raw"
    source = Path(source) if source else offline_copy()
    if source is None:
        return raw
    for name in FASHION_MNIST_FILES:
        target, packed = raw / name, source / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        with gzip.open(packed, "rb") as src:
            write_atomically(target, partial(shutil.copyfileobj, src))
    return raw


def offline_copy() -> Path | None:
    """The folder of gzipped Fashion-MNIST files to use before any download: Debian's, unless
    ``$GOOGLENET_FASHION_MNIST_COPY`` names another (or, set empty, none)."""
    value = os.environ.get(OFFLINE_COPY_VARIABLE)
    if value is None:
        return DEBIAN_FASHION_MNIST
    return Path(value) if value else None


def compute_mean_std(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) scaled to [0, 1], over all pixels."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


@dataclass
class TensorImages:
    """An in-memory split: uint8 images (N, C, H, W) and int64 labels."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Data:
    """A dataset ready for training: both splits plus what a model and a checkpoint need to know.

    ``train``/``test`` are :class:`TensorImages` for in-memory datasets and torch ``Dataset``
    objects (yielding normalised tensors) otherwise. ``resize`` is the side images are resized
    to before the centre crop of ``image_size`` at test time.
    """

    name: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    resize: int
    in_channels: int
    train: TensorImages | Dataset
    test: TensorImages | Dataset

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, TensorImages)


def _not_found(dataset: str, path: Path, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{dataset} not found: looked in {path}. {how}")


def _fashion_mnist(root: Path, train: bool, download: bool) -> tuple[TensorImages, list[str]]:
    raw = ensure_fashion_mnist(root)
    if not download and not all((raw / f).is_file() for f in FASHION_MNIST_FILES):
        raise _not_found(
            "Fashion-MNIST", raw,
            f"Install Debian's dataset-fashion-mnist package (files in {DEBIAN_FASHION_MNIST}), pass "
            "download=True (--download) with internet access, or gunzip the four idx files "
            f"{', '.join(FASHION_MNIST_FILES)} into that folder.",
        )
    ds = datasets.FashionMNIST(root, train=train, download=download)
    return TensorImages(ds.data.unsqueeze(1).contiguous(), ds.targets.long()), list(FASHION_MNIST_CLASSES)


def _cifar10(root: Path, train: bool, download: bool) -> tuple[TensorImages, list[str]]:
    """CIFAR-10 through torchvision, which also checks the files' md5 sums."""
    try:
        ds = datasets.CIFAR10(root, train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise _not_found(
            "CIFAR-10", root / CIFAR10_DIR,
            f"The files are missing or corrupt ({e}). Pass download=True (--download) with internet "
            f"access, or download {CIFAR10_URL} and extract it into {root}.",
        ) from e
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    return TensorImages(images, torch.tensor(ds.targets, dtype=torch.int64)), list(ds.classes)


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[T.Transform]:
    """The last steps of every transform: a float tensor in [0, 1], normalised, as a plain tensor."""
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std), T.ToPureTensor()]


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """ImageNet-style augmentation for image files: random resized crop and horizontal flip."""
    return T.Compose([
        T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip(),
        *_to_normalised_tensor(mean, std),
    ])


def eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], *, resize: int | None = None,
    in_channels: int = 3,
) -> T.Compose:
    """Resize the short side to ``resize`` (default ``image_size``), centre-crop, normalise.

    Also what :mod:`googlenet.predict` applies to any image file (grayscale if ``in_channels=1``).
    """
    steps = [T.Grayscale()] if in_channels == 1 else []
    steps += [T.Resize(resize or image_size, antialias=True), T.CenterCrop(image_size)]
    return T.Compose([*steps, *_to_normalised_tensor(mean, std)])


class ClassFolder(datasets.ImageFolder):
    """An ImageFolder whose class folders are given, in label order: the training split's, so that
    every split numbers the classes alike.

    torchvision's ImageFolder numbers the class folders it finds, so a test folder that lacks one
    class would number the others differently from the training folder. A folder that ``folders``
    lacks is refused.
    """

    def __init__(self, root: str | Path, folders: Sequence[str], transform: T.Compose | None = None) -> None:
        self.given = list(folders)
        super().__init__(str(root), transform=transform, allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        found = datasets.folder.find_classes(str(directory))[0]
        unknown = sorted(set(found) - set(self.given))
        if unknown:
            raise ConfigError(f"{directory} has class folders the training split lacks: {', '.join(unknown)}")
        return self.given, {name: i for i, name in enumerate(self.given)}


def _folder_split(root: Path, names: Sequence[str], dataset: str, how: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise _not_found(dataset, root / names[0], how)


def _image_files(name: str, root: Path, download: bool) -> tuple[Path, Path, list[str], list[str]]:
    """Train folder, test folder, class folders and class names of Imagenette or an ImageFolder tree."""
    if name == "imagenette":
        if download:
            datasets.Imagenette(root, split="train", size="full", download=True)
        how = (f"Pass download=True (--download) with internet access, or download {IMAGENETTE_URL} "
               f"and extract it into {root}.")
        train_dir = _folder_split(root / IMAGENETTE_DIR, ["train"], "Imagenette", how)
        test_dir = _folder_split(root / IMAGENETTE_DIR, ["val"], "Imagenette", how)
        wnids = datasets.folder.find_classes(str(train_dir))[0]
        return train_dir, test_dir, wnids, [datasets.Imagenette._WNID_TO_CLASS[w][0] for w in wnids]
    how = "An ImageFolder tree needs <root>/train/<class>/<image> and <root>/val/... (or test/)."
    train_dir = _folder_split(root, ["train"], "ImageFolder dataset", how)
    test_dir = _folder_split(root, ["val", "test"], "ImageFolder dataset", how)
    folders = datasets.folder.find_classes(str(train_dir))[0]
    return train_dir, test_dir, folders, folders


def _folder_mean_std(train_dir: Path, image_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Estimate an ImageFolder tree's statistics from an evenly spaced sample of training images."""
    plain = datasets.ImageFolder(str(train_dir), transform=T.Compose([
        T.PILToTensor(), T.Resize(image_size, antialias=True), T.CenterCrop(image_size),
    ]))
    step = max(1, len(plain) // MEAN_STD_SAMPLE)
    return compute_mean_std(torch.stack([plain[i][0] for i in range(0, len(plain), step)]))


def subset_indices(size: int, n: int) -> Tensor:
    """The indices of the fixed random sample of ``n`` of ``size`` items that ``subset=n`` keeps."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(0))[:n]


def _take(split: TensorImages | Dataset, n: int | None) -> TensorImages | Dataset:
    """A fixed random subset of ``n`` samples (the same for every run), or the split unchanged."""
    if n is None or n >= len(split):
        return split
    idx = subset_indices(len(split), n)
    if isinstance(split, TensorImages):
        return TensorImages(split.images[idx], split.labels[idx])
    return Subset(split, idx.tolist())


def hold_out(data: Data, n: int) -> Data:
    """``data`` with ``n`` training images (a fixed random sample) as its test split, the rest to train on.

    A validation split to tune on, the test set left untouched; in-memory datasets only.
    """
    if not isinstance(data.train, TensorImages):
        raise ValueError("val_split: only in-memory datasets (Fashion-MNIST, CIFAR-10) hold out images")
    if not 0 < n < len(data.train):
        raise ValueError(f"val_split must leave images to train on: {n} of {len(data.train)} training images")
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    images, labels = data.train.images, data.train.labels
    val, train = order[:n].sort().values, order[n:].sort().values
    return replace(data, train=TensorImages(images[train], labels[train]),
                   test=TensorImages(images[val], labels[val]))


def load_data(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    subset: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Data:
    """Load both splits of a dataset with its standard transforms.

    Args:
        name: one of :data:`DATASETS` (``"folder"`` is any ImageFolder tree with train/ and val/).
        root: the folder datasets live in (default :func:`default_root`); for ``"folder"``, the tree.
        download: fetch missing files (needs internet); otherwise a missing dataset raises
            :class:`DatasetNotFoundError`.
        image_size: side of the (square) images the model sees (default: the dataset's own size;
            224 for image files). In-memory datasets are resized on the device, bilinearly.
        subset: keep a fixed random ``subset`` of each split, for quick experiments and tests.
        mean, std: normalisation; default the dataset's written-down :data:`STATS` (for an
            ImageFolder tree, estimated from its training images).
    """
    name = canonical_name(name)
    root = Path(root) if root is not None else default_root()
    if name in IN_MEMORY:
        load = _fashion_mnist if name == "fashion_mnist" else _cifar10
        (train, classes), (test, _) = load(root, True, download), load(root, False, download)
        image_size = resize = image_size or NATIVE_SIZE[name]
        channels = train.images.shape[1]
        if mean is None or std is None:
            mean, std = STATS[name]
    else:
        image_size = image_size or NATIVE_SIZE[name]
        resize, channels = round(image_size * 256 / 224), 3
        train_dir, test_dir, folders, classes = _image_files(name, root, download)
        if mean is None or std is None:
            mean, std = STATS.get(name) or _folder_mean_std(train_dir, image_size)
        train = ClassFolder(train_dir, folders, transform=train_transform(image_size, mean, std))
        test = ClassFolder(test_dir, folders, transform=eval_transform(image_size, mean, std, resize=resize))
    return Data(name, list(classes), tuple(mean), tuple(std), image_size, resize, channels,
                _take(train, subset), _take(test, subset))
