"""Feature visualisation, attribution and branch ablation (googlenet.visualize, googlenet.attribution)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import standin
import torch
import torchvision
from captum.attr import IntegratedGradients, LayerGradCam, Occlusion

import googlenet
from googlenet import attribution as A
from googlenet import visualize as V
from googlenet.data import load_data
from googlenet.loaders import make_loader


@pytest.fixture(scope="module")
def small():
    """A random, small-stem GoogLeNet for 32-px grayscale images, in eval mode and float64 (in float32
    a max pool's choice can flip between two runs of the same integral's points)."""
    torch.manual_seed(0)
    return googlenet.GoogLeNet(10, variant="torchvision", aux_logits=False, in_channels=1,
                               stem="small").eval().double()


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(1)
    return torch.randn(2, 1, 32, 32, dtype=torch.float64), torch.tensor([3, 7])


@pytest.fixture(scope="module")
def reference():
    return googlenet.load_model(googlenet.reference_checkpoint("fashion_mnist_96"))


def test_grad_cam_is_captums(one_thread, small, inputs):
    x, target = inputs
    ours = A.grad_cam(small, x, target, "inception3b")
    theirs = LayerGradCam(small, small.inception3b).attribute(x, target, relu_attributions=True)
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-7, atol=1e-9)
    assert ours.shape == (2, 8, 8) and ours.min() >= 0


def test_integrated_gradients_is_captums(one_thread, small, inputs):
    x, target = inputs
    ours = A.integrated_gradients(small, x, target, steps=8)
    theirs = IntegratedGradients(small).attribute(x, target=target, n_steps=8, method="riemann_middle")
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


def test_occlusion_is_captums(one_thread, small, inputs):
    x, target = inputs
    ours = A.occlusion(small, x, target, window=16, stride=8)
    theirs = Occlusion(small).attribute(x, sliding_window_shapes=(1, 16, 16), strides=(1, 8, 8),
                                        baselines=0.0, target=target)
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-5, atol=1e-6)  # Captum's is float32
    with pytest.raises(ValueError, match="do not tile"):
        A.occlusion(small, x, target, window=15, stride=8)


def test_zeroing_a_branch_changes_the_output_and_only_within_the_block(one_thread, small, inputs):
    x, _ = inputs
    with torch.no_grad():
        before = small(x)
        with A.zeroed(small, "inception4a.branch3"):
            seen = googlenet.features.capture(small, x, ["inception4a.branch3"])
            during = small(x)
        after = small(x)
    assert seen["inception4a.branch3"].abs().max() == 0
    assert not torch.allclose(before, during)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_run_from_a_layer_finishes_the_forward_pass(one_thread, small, inputs):
    x, _ = inputs
    out = googlenet.features.capture(small, x, ["inception4b", "maxpool2", "fc"])
    for name in ("inception4b", "maxpool2"):
        torch.testing.assert_close(A.run_from(small, name, out[name]), out["fc"], rtol=0, atol=0)


def test_branch_ablation_is_the_accuracy_with_the_branch_zeroed(one_thread, small):
    torch.manual_seed(2)
    x = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        y = small(x).argmax(1)  # the unablated model is always right
    table = A.branch_ablation(small, x, y, batch_size=3)
    assert list(table) == googlenet.features.inception_names(small)
    for name, b in [("inception3a", 0), ("inception4e", 3), ("inception5b", 1)]:
        with A.zeroed(small, f"{name}.branch{b + 1}"):
            assert table[name][b] == A.accuracy(small, x, y)
    assert min(min(row) for row in table.values()) < 1  # some branch matters to some image


def test_branch_shares_sum_to_one(one_thread, small, inputs):
    x, target = inputs
    shares = A.branch_shares(small, x, target)
    assert all(len(row) == 4 and abs(sum(row) - 1) < 1e-5 and min(row) >= 0 for row in shares.values())


def test_objectives_signs_and_shapes():
    torch.manual_seed(0)
    a = {"l": torch.rand(3, 4, 5, 5)}
    assert V.channel("l", 2)(a) == a["l"][:, 2].mean()
    assert V.channel("l", 2, batch=1)(a) == a["l"][1, 2].mean()
    assert V.neuron("l", 1)(a) == a["l"][:, 1, 2, 2].mean()
    torch.testing.assert_close(V.direction("l", torch.eye(4)[3])(a), a["l"][:, 3].mean())
    combined = V.channel("l", 0) - 2 * V.channel("l", 1)
    torch.testing.assert_close(combined(a), a["l"][:, 0].mean() - 2 * a["l"][:, 1].mean())
    assert combined.layers == {"l"}
    torch.testing.assert_close(sum(V.channel("l", c, batch=c) for c in range(3))(a),
                               sum(a["l"][c, c].mean() for c in range(3)))
    same = {"l": a["l"][:1].expand(3, -1, -1, -1)}
    torch.testing.assert_close(V.diversity("l")(same), torch.tensor(-1.0))
    assert V.diversity("l")(a) > V.diversity("l")(same)  # different images: less alike
    assert V.diversity("l")({"l": a["l"][:1]}) == 0


def test_image_parametrisations():
    g = torch.Generator().manual_seed(0)
    for kw in ({"fourier": True}, {"fourier": False}):
        for channels in (1, 3):
            image = V.ImageParam(2, channels, 24, generator=g, **kw)()
            assert image.shape == (2, channels, 24, 24) and 0 < image.min() and image.max() < 1
    assert V.ImageParam(1, 1, 24).decorrelate is False
    for start in (0.1, 0.9):  # the ascent can start from a darker or lighter grey
        image = V.ImageParam(1, 1, 24, start=start, generator=g)()
        assert abs(image.mean().item() - start) < 0.02
    with pytest.raises(ValueError, match="start must lie strictly between 0 and 1"):
        V.ImageParam(1, 1, 24, start=1.0)
    given = torch.rand(2, 1, 24, 24) * 0.9 + 0.05  # or from given images, in pixels
    torch.testing.assert_close(V.ImageParam(2, 1, 24, fourier=False, init=given)(), given)
    with pytest.raises(ValueError, match="needs fourier=False"):
        V.ImageParam(2, 1, 24, init=given)
    torch.testing.assert_close(V.COLOR_CORRELATION.norm(dim=0).max(), torch.tensor(1.0))
    x = torch.rand(2, 3, 96, 96)
    out = V.transform(x, g)
    assert out.shape[:2] == (2, 3) and 90 <= out.shape[-1] <= 114


def test_a_channel_visualisation_excites_its_channel_more_than_test_images(one_thread, reference,
                                                                           fmnist_root):
    model, meta = reference
    data = load_data("fashion_mnist", fmnist_root, image_size=96, subset=64, mean=meta["mean"],
                     std=meta["std"])
    images, _ = next(iter(make_loader(data, "test", 64, "cpu")))
    layer, c = "inception3a", 30
    image = V.render(model, V.channel(layer, c), mean=meta["mean"], std=meta["std"], steps=64)
    x = torch.cat([(image - meta["mean"][0]) / meta["std"][0], images])
    with torch.no_grad():
        act = V.activations(model, x, {layer})[layer][:, c].mean(dim=(1, 2))
    assert act[0] > act[1:].max(), (act[0], act[1:].max())


def test_a_layer_before_its_relu_is_its_batch_norms_output(small, inputs):
    """conv1 before its ReLU is conv1.bn's output; an Inception module's is its four branches' last
    batch norms, concatenated; the ReLU of either is what the layer outputs."""
    x, _ = inputs
    assert V.pre_relu_parts(small, "conv1") == ["conv1.bn"]
    assert V.pre_relu_parts(small, "inception3a") == [
        "inception3a.branch1.bn", "inception3a.branch2.1.bn", "inception3a.branch3.1.bn",
        "inception3a.branch4.1.bn"]
    names = {"conv1", "inception3a", V.pre_relu("conv1"), V.pre_relu("inception3a")}
    with torch.no_grad():
        out = V.activations(small, x, names)
        bn = small.conv1.bn(small.conv1.conv(x))
    torch.testing.assert_close(out[V.pre_relu("conv1")], bn)
    for layer in ("conv1", "inception3a"):
        assert (out[V.pre_relu(layer)] < 0).any()
        torch.testing.assert_close(out[V.pre_relu(layer)].relu(), out[layer])
    paper = googlenet.GoogLeNet(10, variant="paper", in_channels=1, stem="small").eval()
    with torch.no_grad():  # no batch norm: the convolution's output, not overwritten by the ReLU
        pre = V.activations(paper, x.float(), {V.pre_relu("conv1")})[V.pre_relu("conv1")]
    torch.testing.assert_close(pre, paper.conv1.conv(x.float()))


def test_a_render_before_the_relu_starts_where_one_after_it_cannot(one_thread, small):
    """A channel that is zero after its ReLU on the starting image gives the post-ReLU objective no
    gradient; the pre-ReLU objective still raises it."""
    model = small.float()
    grey = torch.full((1, 1, 32, 32), 0.5)
    with torch.no_grad():
        start = V.activations(model, grey, {V.pre_relu("inception3b")})[V.pre_relu("inception3b")]
    c = start.mean(dim=(2, 3))[0].argmin().item()  # the most negative channel on grey
    assert start[0, c].max() < 0
    renders = {name: V.render(model, V.channel(name, c), size=32, steps=8, robust=False)
               for name in ("inception3b", V.pre_relu("inception3b"))}
    with torch.no_grad():
        after = {name: V.activations(model, image, {name})[name][0, c].mean().item()
                 for name, image in renders.items()}
    assert after["inception3b"] == 0  # no gradient: nothing moved
    assert after[V.pre_relu("inception3b")] > start[0, c].mean().item()
    model.double()


def test_the_microscope_chooses_channels_across_branches_and_selectivity(small):
    from googlenet import microscope as M

    assert M.groups(small, "conv1") == [("conv", range(64))]
    assert [(n, len(r)) for n, r in M.groups(small, "inception3a")] == [
        ("branch1", 64), ("branch2", 128), ("branch3", 32), ("branch4", 32)]
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 9.0, 8.0])
    assert M.spread_by(values, range(0, 6), 3) == [1, 4, 0]  # by value 5,1,3,4,2,0: each third's middle
    assert M.spread_by(values, range(6, 8), 4) == [6, 7]
    images = torch.zeros(2, 1, 16, 16)
    images[0, 0, :, ::2] = 1  # stripes of period 2: 0.5 cycles per pixel
    images[1, 0, :8] = 1  # one edge: low frequencies
    frequency = M.mean_frequency(images)
    assert frequency[0] == pytest.approx(0.5) and frequency[1] < 0.2


BOOK = Path(__file__).resolve().parents[1] / "book"


@pytest.mark.notebooks  # runs the chapter's cells with the book's libraries (not in the oldest run)
def test_the_chapters_imagenet_section_runs_offline_on_a_planted_file(tmp_path, monkeypatch, one_thread):
    """Random torchvision weights where torch's hub cache expects the ImageNet file: the chapter's
    ImageNet cells run to the end, and take the file for what it is (not the genuine one)."""
    planted = standin.plant_imagenet_weights(tmp_path)
    assert planted.name == Path(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.url).name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.chdir(BOOK)
    monkeypatch.syspath_prepend(str(BOOK))
    cells = json.loads((BOOK / "09_looking_inside.ipynb").read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    imagenet = ["".join(c["source"]) for c in cells if "imagenet" in c["metadata"].get("tags", [])]
    assert len(imagenet) == 3
    namespace: dict = {}
    exec(code[1], namespace)  # the chapter's set-up: imports, the setting, the device
    namespace["STEPS"] = 2
    for source in imagenet:
        exec(source, namespace)
    namespace["plt"].close("all")
    assert namespace["imagenet"] is not None and namespace["GENUINE"] is False
    assert namespace["gap"] < 1e-4  # torchvision's own model, given the same file, agrees
    assert namespace["colour"].shape == (4, 3, 128, 128)
    assert namespace["cams"].shape == (4, 224, 224)
