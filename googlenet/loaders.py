"""Loaders: batches of a :class:`~googlenet.data.Data` split, normalised and on the device.

Two loading paths yield the same thing:

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

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision.transforms import v2 as T

from .data import PAD, ClassFolder, Data, TensorImages, eval_transform
from .device import pins_memory, seed_for


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
            pin_memory=pins_memory(self.device.type),
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
    """A copy of a ClassFolder (or a Subset of one) whose images go through ``transform``."""
    if isinstance(dataset, Subset):
        return Subset(_with_transform(dataset.dataset, transform), dataset.indices)
    return ClassFolder(dataset.root, dataset.given, transform=transform)
