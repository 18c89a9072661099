"""googlenet.data and googlenet.loaders: roots, offline Fashion-MNIST, CIFAR-10/Imagenette on-disk formats,
loaders."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FOLDER_CLASSES, make_image_folder

import googlenet.data as gd
from googlenet.data import (
    STATS,
    DatasetNotFoundError,
    TensorImages,
    compute_mean_std,
    default_root,
    load_data,
)
from googlenet.loaders import TensorLoader, augment_batch, make_loader, shard_indices

pytestmark = pytest.mark.usefixtures("one_thread")

def test_default_root_is_the_checkout_data_folder_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLENET_DATA", raising=False)
    assert default_root() == Path(gd.__file__).resolve().parent.parent / "data"
    monkeypatch.setenv("GOOGLENET_DATA", str(tmp_path))
    assert default_root() == tmp_path


def test_fashion_mnist_offline_and_its_written_down_statistics(fmnist_root):
    data = load_data("Fashion-MNIST", fmnist_root)
    assert data.train.images.shape == (60000, 1, 28, 28) and data.test.images.shape == (10000, 1, 28, 28)
    assert data.train.images.dtype == torch.uint8 and data.classes[9] == "Ankle boot"
    mean, std = compute_mean_std(data.train.images)
    assert [round(m, 4) for m in mean] == list(STATS["fashion_mnist"][0])
    assert [round(s, 4) for s in std] == list(STATS["fashion_mnist"][1])


def test_missing_datasets_say_what_where_and_how(monkeypatch, tmp_path):
    monkeypatch.setenv(gd.OFFLINE_COPY_VARIABLE, "")  # as on a machine without Debian's package
    cases = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "imagenette": "Imagenette",
             "folder": "ImageFolder"}
    for name, title in cases.items():
        with pytest.raises(DatasetNotFoundError) as err:
            load_data(name, tmp_path)
        message = str(err.value)
        assert title in message and str(tmp_path) in message, message
        assert "download" in message or "train/" in message, message


def test_the_offline_copy_is_debians_another_folder_or_none(monkeypatch, tmp_path):
    monkeypatch.delenv(gd.OFFLINE_COPY_VARIABLE, raising=False)
    assert gd.offline_copy() == gd.DEBIAN_FASHION_MNIST
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in gd.FASHION_MNIST_FILES:  # four tiny gzipped files stand in for the real ones
        with gzip.open(copy / f"{name}.gz", "wb") as f:
            f.write(name.encode())
    monkeypatch.setenv(gd.OFFLINE_COPY_VARIABLE, str(copy))
    raw = gd.ensure_fashion_mnist(tmp_path / "a")
    assert sorted(p.read_text() for p in raw.iterdir()) == sorted(gd.FASHION_MNIST_FILES)
    monkeypatch.setenv(gd.OFFLINE_COPY_VARIABLE, "")
    assert gd.offline_copy() is None and not gd.ensure_fashion_mnist(tmp_path / "b").exists()


def _write_cifar10(root: Path, per_batch: int = 2) -> None:
    """Tiny files in CIFAR-10's python format. The originals are Python 2 pickles whose byte-string
    keys and names load as str under latin1, so str is written here."""
    folder = root / gd.CIFAR10_DIR
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[0, :1024] = 255  # image 0: red plane full, green and blue empty
        data[0, 1024:] = 0
        batch = {"batch_label": name, "labels": [3] * per_batch, "data": data,
                 "filenames": ["x.png"] * per_batch}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))


def test_cifar10_files_that_fail_their_checksums_are_refused(tmp_path):
    _write_cifar10(tmp_path)  # right format, but not the real files: torchvision's md5 check fails
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 not found.*missing or corrupt"):
        load_data("cifar10", tmp_path)


def test_cifar10_is_read_through_torchvision(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    monkeypatch.setattr(gd.datasets.cifar, "check_integrity", lambda *args: True)  # accept the fakes
    data = load_data("cifar10", tmp_path)
    assert data.train.images.shape == (10, 3, 32, 32) and data.test.images.shape == (2, 3, 32, 32)
    assert data.classes[3] == "cat" and data.train.labels.tolist() == [3] * 10
    red = data.train.images[0]
    assert (red[0] == 255).all() and (red[1:] == 0).all()  # planes land on the right channels
    x, y = next(iter(make_loader(data, "test", 8, "cpu")))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected = (1 - STATS["cifar10"][0][0]) / STATS["cifar10"][1][0]
    assert torch.allclose(x[0, 0], torch.full((32, 32), expected))


def test_imagenette_is_read_from_its_real_folder_layout(tmp_path):
    wnids = ("n01440764", "n02102040")  # tench, English springer
    make_image_folder(tmp_path / gd.IMAGENETTE_DIR, {"train": 2, "val": 1}, suffix=".JPEG", classes=wnids)
    data = load_data("imagenette", tmp_path, image_size=32)
    assert data.classes == ["tench", "English springer"] and data.mean == STATS["imagenette"][0]
    assert len(data.train) == 4 and len(data.test) == 2
    x, y = next(iter(make_loader(data, "train", 4, "cpu")))
    assert x.shape == (4, 3, 32, 32) and sorted(y.tolist()) == [0, 0, 1, 1]


def test_image_folder_statistics_are_computed_from_its_images(image_folder):
    data = load_data("folder", image_folder, image_size=32, subset=6)
    assert data.classes == list(FOLDER_CLASSES) and len(data.train) == 6 and len(data.test) == 6
    assert data.in_channels == 3 and not data.in_memory
    assert all(0.1 < m < 0.9 for m in data.mean) and all(0.05 < s < 0.5 for s in data.std)


def test_every_split_of_a_folder_tree_numbers_the_classes_as_the_training_split(tmp_path):
    make_image_folder(tmp_path, {"train": 2})
    make_image_folder(tmp_path, {"val": 1}, classes=FOLDER_CLASSES[1:])  # no circle to validate on
    data = load_data("folder", tmp_path, image_size=32)
    assert data.classes == list(FOLDER_CLASSES)
    assert [data.test.classes[y] for _, y in data.test.samples] == ["square", "stripes"]
    assert {data.train.classes[y] for _, y in data.train.samples} == set(FOLDER_CLASSES)
    make_image_folder(tmp_path, {"val": 1}, classes=("triangle",))
    with pytest.raises(ValueError, match="lacks: triangle"):
        load_data("folder", tmp_path, image_size=32)


def test_augment_batch_crops_and_flips_windows_of_the_padded_image():
    images = torch.randint(0, 256, (16, 2, 6, 5), dtype=torch.uint8)
    out = augment_batch(images, pad=2, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for i in range(16):
        windows = [padded[i, :, t:t + 6, left:left + 5] for t in range(5) for left in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 0 < flips < 16


def test_shards_cover_the_data_and_change_every_epoch():
    parts = [shard_indices(10, shuffle=True, seed=0, epoch=3, rank=r, world_size=3) for r in range(3)]
    assert all(len(p) == 4 for p in parts) and set(torch.cat(parts).tolist()) == set(range(10))
    again = shard_indices(10, shuffle=True, seed=0, epoch=3, rank=1, world_size=3)
    assert torch.equal(parts[1], again)
    assert not torch.equal(parts[1], shard_indices(10, shuffle=True, seed=0, epoch=4, rank=1, world_size=3))
    evals = [shard_indices(10, shuffle=False, seed=0, epoch=0, rank=r, world_size=3) for r in range(3)]
    assert sorted(torch.cat(evals).tolist()) == list(range(10))


def test_each_rank_draws_its_own_augmentation():
    same = TensorImages(torch.randint(0, 256, (1, 1, 8, 8), dtype=torch.uint8).repeat(32, 1, 1, 1),
                        torch.zeros(32, dtype=torch.int64))
    batches = [next(iter(TensorLoader(same, 16, "cpu", mean=(0.5,), std=(0.5,), shuffle=True,
                                         augment=True, rank=rank, world_size=2)))[0] for rank in (0, 1)]
    assert not torch.equal(*batches)  # the same images, cropped and flipped differently


def test_image_files_replay_exactly_with_persistent_workers(image_folder):
    data = load_data("folder", image_folder, image_size=32)
    main, workers = (make_loader(data, "train", 8, "cpu", seed=1, workers=n) for n in (0, 2))
    assert workers.loader.persistent_workers and not main.loader.persistent_workers
    epochs = []
    for epoch in (0, 1, 0):
        main.set_epoch(epoch)
        workers.set_epoch(epoch)
        # each image's augmentation comes from (seed, epoch, index): worker processes change nothing
        a, b = list(main), list(workers)
        assert len(a) == 3 and all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))
        epochs.append(torch.cat([x for x, _ in a]))
    assert torch.equal(epochs[0], epochs[2]) and not torch.equal(epochs[0], epochs[1])


def test_tensor_loader_normalises_and_replays_an_epoch(fmnist_root):
    data = load_data("fashion_mnist", fmnist_root)
    x = torch.cat([x for x, _ in make_loader(data, "train", 4096, "cpu", augment=False)])
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    small = gd.Data(data.name, data.classes, data.mean, data.std, 28, 28, 1,
                    TensorImages(data.train.images[:50], data.train.labels[:50]), data.test)
    loader = make_loader(small, "train", 16, "cpu")
    assert len(loader) == 3  # 50 images: three full batches, the last two images wait for next epoch
    loader.set_epoch(1)
    first = [b for b, _ in loader]
    loader.set_epoch(2)
    assert not torch.equal(first[0], next(iter(loader))[0])
    loader.set_epoch(1)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, loader, strict=True))
