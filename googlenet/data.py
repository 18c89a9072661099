"""Datasets and loaders: Fashion-MNIST, CIFAR-10, Imagenette and any ImageFolder tree.

Two loading paths yield the same thing, normalised float batches already on the device:

- :class:`TensorLoader` for datasets that fit in memory (Fashion-MNIST, CIFAR-10): the whole
  uint8 dataset sits on the device and is augmented there (pad-and-crop, horizontal flip), so a
  GPU is never starved by Python worker processes.
- :class:`BatchLoader` for image files (Imagenette, ImageFolder): an ordinary ``DataLoader`` whose
  workers decode and augment with torchvision transforms.

Both shuffle with a generator seeded by ``(seed, epoch)`` and shard indices across distributed
ranks, and draw augmentation from seeds of ``(seed, epoch, rank)`` (per image for image files;
all from :func:`~googlenet.device.seed_for`), so an epoch's batches depend only on the seed, the
epoch number and the rank: that is what makes ``--resume`` exact.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision import datasets
from torchvision import transforms as T

from .device import seed_for

DATASETS = ("fashion_mnist", "cifar10", "imagenette", "folder")
IN_MEMORY = ("fashion_mnist", "cifar10")

# Where Debian's `dataset-fashion-mnist` package installs the four gzipped idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
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
    "imagenette": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
PAD = {"fashion_mnist": 2, "cifar10": 4}  # pixels of zero padding before the random crop
NATIVE_SIZE = {"fashion_mnist": 28, "cifar10": 32, "imagenette": 224, "folder": 224}
MEAN_STD_SAMPLE = 512  # images read to estimate an ImageFolder tree's statistics


class DatasetNotFoundError(FileNotFoundError):
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
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return key


def ensure_fashion_mnist(root: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Make ``<root>/FashionMNIST/raw`` hold the four idx files, gunzipping Debian's copies if needed.

    ``source`` defaults to :data:`DEBIAN_FASHION_MNIST`. Returns the raw folder. Files that
    ``source`` lacks stay missing (the caller then raises :class:`DatasetNotFoundError` or downloads).
    """
    raw = Path(root or default_root()) / "FashionMNIST" / "raw"
    source = Path(source or DEBIAN_FASHION_MNIST)
    for name in FASHION_MNIST_FILES:
        target, packed = raw / name, source / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        raw.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)  # never leave a half-written file under the real name
    return raw


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


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """ImageNet-style augmentation for image files: random resized crop and horizontal flip."""
    return T.Compose([
        T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip(),
        T.ToTensor(), T.Normalize(mean, std),
    ])


def eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], *, resize: int | None = None,
    in_channels: int = 3,
) -> T.Compose:
    """Resize the short side to ``resize`` (default ``image_size``), centre-crop, normalise.

    Also what :mod:`googlenet.predict` applies to any image file (grayscale if ``in_channels=1``).
    """
    steps = [T.Grayscale()] if in_channels == 1 else []
    steps += [T.Resize(resize or image_size, antialias=True), T.CenterCrop(image_size), T.ToTensor()]
    return T.Compose([*steps, T.Normalize(mean, std)])


def _folder_split(root: Path, names: Sequence[str], dataset: str, how: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise _not_found(dataset, root / names[0], how)


def _image_files(name: str, root: Path, download: bool) -> tuple[Path, Path, list[str]]:
    """Train folder, test folder and class names of Imagenette or an ImageFolder tree."""
    if name == "imagenette":
        if download:
            datasets.Imagenette(root, split="train", size="full", download=True)
        how = (f"Pass download=True (--download) with internet access, or download {IMAGENETTE_URL} "
               f"and extract it into {root}.")
        train_dir = _folder_split(root / IMAGENETTE_DIR, ["train"], "Imagenette", how)
        test_dir = _folder_split(root / IMAGENETTE_DIR, ["val"], "Imagenette", how)
        wnids = datasets.folder.find_classes(str(train_dir))[0]
        return train_dir, test_dir, [datasets.Imagenette._WNID_TO_CLASS[w][0] for w in wnids]
    how = "An ImageFolder tree needs <root>/train/<class>/<image> and <root>/val/... (or test/)."
    train_dir = _folder_split(root, ["train"], "ImageFolder dataset", how)
    test_dir = _folder_split(root, ["val", "test"], "ImageFolder dataset", how)
    return train_dir, test_dir, datasets.folder.find_classes(str(train_dir))[0]


def _folder_mean_std(train_dir: Path, image_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Estimate an ImageFolder tree's statistics from an evenly spaced sample of training images."""
    plain = datasets.ImageFolder(str(train_dir), transform=T.Compose([
        T.Resize(image_size, antialias=True), T.CenterCrop(image_size), T.PILToTensor(),
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
        train_dir, test_dir, classes = _image_files(name, root, download)
        if mean is None or std is None:
            mean, std = STATS.get(name) or _folder_mean_std(train_dir, image_size)
        train = datasets.ImageFolder(str(train_dir), transform=train_transform(image_size, mean, std))
        test_tf = eval_transform(image_size, mean, std, resize=resize)
        test = datasets.ImageFolder(str(test_dir), transform=test_tf)
    return Data(name, list(classes), tuple(mean), tuple(std), image_size, resize, channels,
                _take(train, subset), _take(test, subset))


def shard_indices(
    n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """This rank's sample indices for one epoch: a (seed, epoch)-determined permutation, split by rank.

    Shuffled (training) shards are padded by wrapping around so every rank gets as many samples;
    unshuffled (evaluation) shards are plain strides, so every sample is counted exactly once.
    """
    if not shuffle:
        return torch.arange(rank, n, world_size)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed_for(seed, "shuffle", epoch)))
    per_rank = -(-n // world_size)
    order = order.repeat(-(-per_rank * world_size // n))[: per_rank * world_size]
    return order[rank::world_size]


def augment_batch(images: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random crop after ``pad`` pixels of zero padding, and random horizontal flip, on any device.

    One gather does every crop of the batch: row ``i`` of the output reads rows
    ``top[i] .. top[i] + H`` and columns ``left[i] .. left[i] + W`` of the padded image.
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    top, left = (torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev) for _ in range(2))
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    cols = left[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip is reading the columns backwards
    rows = top[:, None] + torch.arange(h, device=dev)
    return padded[
        torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None], cols[:, None, None, :],
    ]


class TensorLoader:
    """Batches of an in-memory dataset kept on ``device``: augmented and normalised there.

    Iterating yields ``(images, labels)``: float images (B, C, H, W) normalised with
    ``mean``/``std``, int64 labels, both on ``device``. Call :meth:`set_epoch` before each epoch.
    Training loaders (``shuffle=True``) drop a last incomplete batch when there is a full one.
    """

    def __init__(
        self, data: TensorImages, batch_size: int, device: torch.device | str, *,
        mean: Sequence[float], std: Sequence[float], shuffle: bool = False, augment: bool = False,
        pad: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1,
        store_device: torch.device | str | None = None, size: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        store = torch.device(store_device) if store_device is not None else self.device
        self.images, self.labels = data.images.to(store), data.labels.to(store)
        view = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(view)
        self.std = torch.tensor(std, device=self.device).view(view)
        self.batch_size, self.shuffle, self.augment, self.pad = batch_size, shuffle, augment, pad
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self.size = size if size is not None and size != data.images.shape[-1] else None
        self._len = _num_batches(len(self._indices()), batch_size, drop_last=shuffle)  # same every epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle and augmentation to replay (deterministic per epoch)."""
        self.epoch = epoch

    def _indices(self) -> Tensor:
        return shard_indices(len(self.labels), shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                             rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices().to(self.images.device)
        # augmentation differs between ranks (each rank's crops are its own), order is shared
        gen = torch.Generator().manual_seed(seed_for(self.seed, "augment", self.epoch, self.rank))
        for i in range(len(self)):
            take = idx[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[take]
            if self.augment:
                x = augment_batch(x, self.pad, gen)
            x = x.to(self.device, non_blocking=True).float().div_(255)
            if self.size is not None:  # e.g. Fashion-MNIST at 96 px for the ImageNet stem
                x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                    align_corners=False)
            yield (x - self.mean) / self.std, self.labels[take].to(self.device, non_blocking=True)


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    full, rest = divmod(n, batch_size)
    return full if drop_last and full else full + (rest > 0)


class ShardSampler(Sampler):
    """This rank's share of a dataset, in the order :func:`shard_indices` gives for ``(seed, epoch)``.

    What ``DistributedSampler`` does, plus a seed per sample: it yields ``(index, sample seed)``
    pairs, the seed from ``(seed, epoch, rank, index)``, so that :class:`SeededSamples` draws each
    image's augmentation from its own seed. Then an epoch's batches depend only on ``(seed, epoch,
    rank)``, whatever the number of worker processes, and persistent workers (started once per
    run) still resume exactly.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 0
        self._len = len(self._indices())  # the same every epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        return shard_indices(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                             rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed, epoch, rank = self.seed, self.epoch, self.rank
        return ((i, seed_for(seed, "sample", epoch, rank, i)) for i in self._indices().tolist())


class SeededSamples(Dataset):
    """``dataset[index]`` drawn from the seed that comes with the index (see :class:`ShardSampler`).

    The global CPU generator is saved and restored around each sample, and only it is seeded, so
    loading in the main process (``workers=0``) leaves the training's random streams (dropout, on
    the CPU or a GPU) untouched.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed the GPU too
            return self.dataset[index]


class BatchLoader:
    """The ordinary path for image files: one ``DataLoader`` (persistent workers), batches copied to
    ``device``. Call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``."""

    def __init__(
        self, dataset: Dataset, batch_size: int, device: torch.device | str, *, shuffle: bool = False,
        seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 0,
    ) -> None:
        self.device = torch.device(device)
        shard = {"seed": seed, "rank": rank, "world_size": world_size}
        self.sampler = ShardSampler(len(dataset), shuffle=shuffle, **shard)
        self.loader = DataLoader(
            SeededSamples(dataset), batch_size, sampler=self.sampler, num_workers=workers,
            persistent_workers=workers > 0, drop_last=shuffle and len(self.sampler) >= batch_size,
            pin_memory=self.device.type == "cuda",
        )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle and augmentation to replay (deterministic per epoch)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_loader(
    data: Data, split: str, batch_size: int, device: torch.device | str, *,
    augment: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 0,
    on_device: bool = True,
) -> TensorLoader | BatchLoader:
    """The right loader for ``data``'s ``"train"`` or ``"test"`` split.

    Training loaders shuffle (and augment, unless ``augment=False``); test loaders keep order.
    ``on_device=False`` keeps an in-memory dataset in CPU memory and copies each batch over.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    train = split == "train"
    part = data.train if train else data.test
    shard = {"seed": seed, "rank": rank, "world_size": world_size}
    if isinstance(part, TensorImages):
        return TensorLoader(
            part, batch_size, device, mean=data.mean, std=data.std, shuffle=train, augment=train and augment,
            pad=PAD.get(data.name, 4), store_device=None if on_device else "cpu", size=data.image_size,
            **shard,
        )
    if train and not augment:
        part = _with_transform(part, eval_transform(data.image_size, data.mean, data.std, resize=data.resize))
    return BatchLoader(part, batch_size, device, shuffle=train, workers=workers, **shard)


def _with_transform(dataset: Dataset, transform: T.Compose) -> Dataset:
    """A copy of an ImageFolder (or a Subset of one) whose images go through ``transform``."""
    if isinstance(dataset, Subset):
        return Subset(_with_transform(dataset.dataset, transform), dataset.indices)
    return datasets.ImageFolder(dataset.root, transform=transform)
