"""The builder and its weights, as torchvision's: ``googlenet(weights=GoogLeNet_Weights.X)`` and torch.hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from googlenet import GoogLeNet_Weights, googlenet, load_model
from googlenet.checkpoint import REFERENCE_DIR, CheckpointError
from googlenet.data import FASHION_MNIST_CLASSES
from googlenet.weights import RELEASE, sha256_of

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = [GoogLeNet_Weights.FASHION_MNIST_SMALL, GoogLeNet_Weights.FASHION_MNIST_96]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty torch hub cache, and no clone to take committed files from."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("googlenet.weights.REFERENCE_DIR", tmp_path / "no-clone")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _release_folder(tmp_path: Path, monkeypatch) -> Path:
    """The release's assets in a local folder, served through GOOGLENET_WEIGHTS_URL=file://..."""
    folder = tmp_path / "release"
    folder.mkdir()
    for member in REFERENCE:
        shutil.copyfile(REFERENCE_DIR / member.value.run / "model.pt", folder / Path(member.url).name)
    monkeypatch.setenv("GOOGLENET_WEIGHTS_URL", folder.as_uri())
    return folder


@pytest.mark.parametrize("member", REFERENCE, ids=lambda m: m.name)
def test_meta_describes_the_committed_run(member):
    run = REFERENCE_DIR / member.value.run
    trained = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads((run / "evaluation.json").read_text())
    model, meta = load_model(run / "model.pt")
    assert sha256_of(run / "model.pt").startswith(member.url.rsplit("-", 1)[1].removesuffix(".pt"))
    assert member.url.startswith(RELEASE)
    assert member.meta["categories"] == meta["classes"] == list(FASHION_MNIST_CLASSES)
    assert member.meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert member.meta["min_size"] == (model.min_input_size,) * 2
    assert member.meta["image_size"] == meta["image_size"]
    assert member.meta["model_kwargs"].items() <= meta["model_kwargs"].items()
    metrics = member.meta["metrics"]["Fashion-MNIST"]
    assert metrics["acc@1"] == pytest.approx(100 * evaluated["accuracy"])
    assert metrics["acc@1 (recorded in training)"] == pytest.approx(100 * trained["test_acc"])
    assert member.meta["recipe"] == trained["command"]


def test_the_release_is_the_books_repository():
    import yaml

    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert RELEASE.startswith(url.removesuffix(".git") + "/releases/download/")


@pytest.mark.parametrize("member", REFERENCE, ids=lambda m: m.name)
def test_builder_in_a_clone_uses_the_committed_file(member, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing may be downloaded
    model = googlenet(weights=member).eval()
    reference, _ = load_model(REFERENCE_DIR / member.value.run / "model.pt")
    x = torch.randn(2, 1, member.meta["image_size"], member.meta["image_size"])
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert not any(tmp_path.rglob("*.pt"))


def test_builder_downloads_into_the_hub_cache_and_checks_the_hash(hub_cache, tmp_path, monkeypatch):
    _release_folder(tmp_path, monkeypatch)
    member = GoogLeNet_Weights.FASHION_MNIST_SMALL
    model = googlenet(weights="FASHION_MNIST_SMALL", progress=False).eval()
    cached = hub_cache / Path(member.url).name
    assert cached.is_file()
    reference, _ = load_model(REFERENCE_DIR / member.value.run / "model.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_a_file_with_a_wrong_hash_is_refused(hub_cache, tmp_path, monkeypatch):
    folder = _release_folder(tmp_path, monkeypatch)
    asset = folder / Path(GoogLeNet_Weights.FASHION_MNIST_96.url).name
    asset.write_bytes(asset.read_bytes() + b"tampered")
    with pytest.raises(CheckpointError, match=r"^refused .*its SHA-256 does not start with 21c77501") as e:
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, progress=False)
    assert "\n" not in str(e.value)
    assert not any(hub_cache.glob("*")) if hub_cache.exists() else True


def test_a_missing_download_says_where(hub_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_WEIGHTS_URL", (tmp_path / "empty").as_uri())
    with pytest.raises(OSError):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, progress=False)


def test_committed_file_that_is_not_the_members_is_refused(tmp_path, monkeypatch):
    (tmp_path / "fashion_mnist_96").mkdir()
    (tmp_path / "fashion_mnist_96" / "model.pt").write_bytes(b"retrained")
    monkeypatch.setattr("googlenet.weights.REFERENCE_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="update googlenet/weights.py"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown weights 'FASHION'; expected one of FASHION_MNIST_SMALL"):
        googlenet(weights="FASHION")
    with pytest.raises(ValueError, match="FASHION_MNIST_96 needs num_classes=10, got 3"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, num_classes=3)
    with pytest.raises(ValueError, match="FASHION_MNIST_96 needs aux_logits=False, got True"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, aux_logits=True)


def test_untrained_builder_is_the_model_class():
    model = googlenet(num_classes=7, variant="torchvision", in_channels=1, stem="small")
    assert model.fc.out_features == 7 and model.conv1.conv.in_channels == 1


def test_transforms_prepare_an_image_as_the_weights_expect():
    member = GoogLeNet_Weights.FASHION_MNIST_96
    x = member.transforms()(Image.new("RGB", (40, 30), (255, 255, 255)))
    assert type(x) is torch.Tensor and x.shape == (1, 96, 96) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, (1 - 0.286) / 0.353))


def test_imagenet_weights_from_the_hub_cache_match_torchvisions(hub_cache):
    """A random torchvision state dict planted where torch.hub keeps the genuine file (offline)."""
    torch.manual_seed(0)
    planted = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    hub_cache.mkdir(parents=True)
    torch.save(planted.state_dict(), hub_cache / Path(GoogLeNet_Weights.IMAGENET1K_V1.url).name)
    ours = googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1).eval()
    theirs = torchvision.models.googlenet(weights=torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1).eval()
    assert ours.aux1 is None and ours.transform_input
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(ours(x), theirs(x))
    assert GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"][0] == "tench"


def test_torch_hub_loads_from_a_local_checkout():
    model = torch.hub.load(str(ROOT), "googlenet", source="local", weights="FASHION_MNIST_SMALL").eval()
    reference, _ = load_model(REFERENCE_DIR / "fashion_mnist_small" / "model.pt")
    x = torch.randn(1, 1, 28, 28)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_weights_command_writes_the_release_assets(tmp_path, capsys):
    from googlenet.weights import main

    main([str(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(Path(m.url).name for m in REFERENCE)
    assert "FASHION_MNIST_96: 21c77501" in capsys.readouterr().out
