"""The builder and its weights, as torchvision's: ``googlenet(weights=GoogLeNet_Weights.X)`` and torch.hub."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from googlenet import GoogLeNet_Weights, googlenet, load_model
from googlenet.checkpoint import CheckpointError
from googlenet.data import FASHION_MNIST_CLASSES
from googlenet.weights import REFERENCE_DIR, RELEASE, reference_run, sha256_of

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
        shutil.copyfile(REFERENCE_DIR / reference_run(member) / "model.pt", folder / Path(member.url).name)
    monkeypatch.setenv("GOOGLENET_WEIGHTS_URL", folder.as_uri())
    return folder


@pytest.mark.parametrize("member", REFERENCE, ids=lambda m: m.name)
def test_meta_describes_the_committed_run(member):
    run = REFERENCE_DIR / reference_run(member)
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
    assert member.meta["_file_size"] == round((run / "model.pt").stat().st_size / 2**20, 3)
    metrics = member.meta["_metrics"]["Fashion-MNIST"]
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
    reference, _ = load_model(REFERENCE_DIR / reference_run(member) / "model.pt")
    x = torch.randn(2, 1, member.meta["image_size"], member.meta["image_size"])
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert not any(tmp_path.rglob("*.pt"))


def test_builder_downloads_into_the_hub_cache_and_checks_the_hash(hub_cache, tmp_path, monkeypatch):
    _release_folder(tmp_path, monkeypatch)
    member = GoogLeNet_Weights.FASHION_MNIST_SMALL
    model = googlenet(weights="FASHION_MNIST_SMALL", progress=False).eval()
    cached = hub_cache / Path(member.url).name
    assert cached.is_file()
    reference, _ = load_model(REFERENCE_DIR / reference_run(member) / "model.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_a_file_with_a_wrong_hash_is_refused(hub_cache, tmp_path, monkeypatch):
    folder = _release_folder(tmp_path, monkeypatch)
    asset = folder / Path(GoogLeNet_Weights.FASHION_MNIST_96.url).name
    asset.write_bytes(asset.read_bytes() + b"tampered")
    with pytest.raises(CheckpointError, match=r"^refused .*its SHA-256 does not start with 21c77501") as e:
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, progress=False)
    assert "\n" not in str(e.value)
    assert hub_cache.is_dir() and not list(hub_cache.iterdir())  # the download was deleted


def test_a_missing_download_says_where(hub_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_WEIGHTS_URL", (tmp_path / "empty").as_uri())
    name = Path(GoogLeNet_Weights.FASHION_MNIST_96.url).name
    with pytest.raises(OSError, match=f"No such file or directory: .*empty/{name}"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, progress=False)


def test_committed_file_that_is_not_the_members_is_refused(tmp_path, monkeypatch):
    (tmp_path / "fashion_mnist_96").mkdir()
    (tmp_path / "fashion_mnist_96" / "model.pt").write_bytes(b"retrained")
    monkeypatch.setattr("googlenet.weights.REFERENCE_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="update googlenet/weights.py"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(KeyError, match="unknown weights 'FASHION'; expected one of FASHION_MNIST_SMALL"):
        googlenet(weights="FASHION")
    with pytest.raises(ValueError, match="'num_classes' expected value 10 but got 3"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, num_classes=3)
    with pytest.raises(ValueError, match="'stem' expected value imagenet but got small"):
        googlenet(weights=GoogLeNet_Weights.FASHION_MNIST_96, stem="small")


def test_auxiliary_heads_with_reference_weights_are_fresh_and_said_to_be(one_thread):
    member = GoogLeNet_Weights.FASHION_MNIST_SMALL
    with pytest.warns(UserWarning, match="auxiliary heads .* are NOT pretrained"):
        model = googlenet(weights=member, aux_logits=True, dropout_aux=0.5).eval()
    plain = googlenet(weights=member).eval()
    assert model.aux1 is not None and model.aux1.dropout.p == 0.5 and plain.aux1 is None
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_computed_facts_reproduce_the_ones_torchvision_typed():
    """``num_params``, ``min_size`` and ``_ops`` are measured, the way that gives torchvision's numbers."""
    from googlenet.weights import _facts

    kwargs = {**GoogLeNet_Weights.IMAGENET1K_V1.meta["model_kwargs"], "aux_logits": False}
    theirs = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta
    assert _facts(kwargs, 224) == {k: theirs[k] for k in ("num_params", "min_size", "_ops")}


def test_default_is_the_documented_starting_point():
    assert GoogLeNet_Weights.DEFAULT is GoogLeNet_Weights.FASHION_MNIST_SMALL
    assert "``DEFAULT`` is ``FASHION_MNIST_SMALL``" in GoogLeNet_Weights.__doc__
    assert [m.name for m in GoogLeNet_Weights] == ["FASHION_MNIST_SMALL", "FASHION_MNIST_96", "IMAGENET1K_V1"]


def test_untrained_builder_is_the_model_class():
    model = googlenet(num_classes=7, variant="torchvision", in_channels=1, stem="small")
    assert model.fc.out_features == 7 and model.conv1.conv.in_channels == 1


def test_transforms_prepare_an_image_as_the_weights_expect():
    member = GoogLeNet_Weights.FASHION_MNIST_96
    x = member.transforms()(Image.new("RGB", (40, 30), (255, 255, 255)))
    assert type(x) is torch.Tensor and x.shape == (1, 96, 96) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, (1 - 0.286) / 0.353))


def test_imagenet_weights_from_the_hub_cache_match_torchvisions(planted_imagenet_file):
    ours = googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1).eval()
    theirs = torchvision.models.googlenet(weights=torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1).eval()
    assert ours.aux1 is None and ours.transform_input
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(ours(x), theirs(x))
    assert GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"][0] == "tench"


@pytest.fixture
def planted_imagenet_file(hub_cache):
    """A random torchvision state dict planted where torch.hub keeps the genuine ImageNet file (offline)."""
    torch.manual_seed(0)
    planted = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    hub_cache.mkdir(parents=True)
    torch.save(planted.state_dict(), hub_cache / Path(GoogLeNet_Weights.IMAGENET1K_V1.url).name)


ENUMS = {"ours": (GoogLeNet_Weights, googlenet),
         "torchvision": (torchvision.models.GoogLeNet_Weights, torchvision.models.googlenet)}


@pytest.mark.parametrize("side", ENUMS)
def test_the_enum_answers_the_same_calls_as_torchvisions(side, planted_imagenet_file):
    enum, _ = ENUMS[side]
    member = enum.IMAGENET1K_V1
    assert repr(member) == "GoogLeNet_Weights.IMAGENET1K_V1" and member.name == "IMAGENET1K_V1"
    assert enum.verify(None) is None
    assert enum.verify(member) is enum.verify("IMAGENET1K_V1") is member
    assert enum.verify("GoogLeNet_Weights.IMAGENET1K_V1") is member
    assert enum.verify("DEFAULT") is enum.DEFAULT and enum.DEFAULT in enum
    with pytest.raises(KeyError, match="NOPE"):
        enum.verify("NOPE")
    with pytest.raises(TypeError, match="expected GoogLeNet_Weights but received int"):
        enum.verify(3)
    keys = set(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta)
    for each in enum:
        assert keys <= set(each.meta), keys - set(each.meta)
        assert each.meta["num_params"] > 0 and len(each.meta["min_size"]) == 2
    torchvisions = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    state = member.get_state_dict(progress=False, check_hash=True)
    theirs = torchvisions.get_state_dict(progress=False, check_hash=True)
    assert state.keys() == theirs.keys() and all(torch.equal(state[k], theirs[k]) for k in state)
    image = Image.new("RGB", (300, 250), (200, 100, 50))
    torch.testing.assert_close(member.transforms()(image), torchvisions.transforms()(image))


@pytest.mark.parametrize("side", ENUMS)
def test_the_builder_keeps_torchvisions_keyword_rules(side, planted_imagenet_file, one_thread):
    enum, build = ENUMS[side]
    with pytest.warns(UserWarning, match="auxiliary heads in the pretrained googlenet model are NOT"):
        with_aux = build(weights=enum.IMAGENET1K_V1, aux_logits=True, dropout_aux=0.5)
    assert with_aux.aux1 is not None and with_aux.aux1.dropout.p == 0.5 and with_aux.transform_input
    plain = build(weights="GoogLeNet_Weights.IMAGENET1K_V1", progress=False, transform_input=False)
    assert plain.aux1 is None and not plain.transform_input and plain.fc.out_features == 1000
    with pytest.raises(ValueError, match="'aux_logits' expected value True but got False"):
        build(weights=enum.IMAGENET1K_V1, aux_logits=False)
    with pytest.raises(ValueError, match="'num_classes' expected value 1000 but got 10"):
        build(weights=enum.IMAGENET1K_V1, num_classes=10)
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(plain.eval()(x), ENUMS["torchvision"][1](
        weights=torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1, transform_input=False).eval()(x))


def test_torch_hub_loads_from_a_local_checkout():
    model = torch.hub.load(str(ROOT), "googlenet", source="local", weights="FASHION_MNIST_SMALL").eval()
    reference, _ = load_model(REFERENCE_DIR / "fashion_mnist_small" / "model.pt")
    x = torch.randn(1, 1, 28, 28)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)



def test_release_command_writes_the_release_assets(tmp_path, capsys):
    """``python book/release_weights.py DIR`` (book production, outside the package)."""
    sys.path.insert(0, str(ROOT / "book"))
    from release_weights import main

    main([str(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(Path(m.url).name for m in REFERENCE)
    assert "FASHION_MNIST_96: 21c77501" in capsys.readouterr().out
