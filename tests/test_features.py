"""googlenet.features: hooks capture the right tensors and leave the model as it was."""

import matplotlib
import pytest
import torch

import googlenet
from googlenet.architecture import INCEPTION_ROWS
from googlenet.features import (
    branch_names,
    capture,
    capture_branches,
    draw_inception,
    draw_network,
    trace,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return googlenet.GoogLeNet(10, variant="torchvision", stem="small")


def test_branches_concatenate_to_the_module_output(model):
    x = torch.randn(2, 3, 32, 32)
    branches = capture_branches(model, x)
    assert list(branches) == branch_names(model) and len(branches) == 36
    module_out = capture(model, x, ["inception4d"])["inception4d"]
    joined = torch.cat([branches[f"inception4d.branch{i}"] for i in range(1, 5)], dim=1)
    assert torch.equal(joined, module_out)
    assert branches["inception3a.branch3"].shape == (2, 32, 8, 8)


def test_capture_restores_mode_and_removes_hooks(model):
    model.train()
    capture(model, torch.randn(1, 3, 32, 32), ["conv1"])
    assert model.training
    assert not model.conv1._forward_hooks
    model.eval()
    capture(model, torch.randn(1, 3, 32, 32), ["conv1"])
    assert not model.training


def test_trace_runs_aux_heads_without_touching_batch_norm(model):
    before = model.conv1.bn.running_mean.clone()
    stages = trace(model, 32)
    names = [s.name for s in stages]
    assert names.index("aux1") == names.index("inception4a") + 1
    assert names.index("aux2") == names.index("inception4d") + 1
    assert dict((s.name, s.shape) for s in stages)["inception5b"] == (1024, 2, 2)
    assert torch.equal(before, model.conv1.bn.running_mean)


def test_draw_network_labels_come_from_the_model():
    ax = draw_network(googlenet.GoogLeNet(variant="paper"))
    texts = {t.get_text() for t in ax.texts}
    assert "7x7/2 conv, 64" in texts and "1x1 (16)\n5x5 (32)" in texts
    ax = draw_network(googlenet.GoogLeNet(variant="torchvision"))
    texts = {t.get_text() for t in ax.texts}
    assert "7x7/2 conv, 64 + BN" in texts and "1x1 (16)\n3x3 (32)" in texts
    assert "local response norm" not in texts
    matplotlib.pyplot.close("all")


def test_capture_keeps_values_from_before_in_place_relu():
    torch.manual_seed(0)
    paper = googlenet.GoogLeNet(10, variant="paper", stem="small", aux_logits=False)
    conv = capture(paper, torch.randn(1, 3, 32, 32), ["conv1.conv"])["conv1.conv"]
    assert conv.min() < 0  # a raw convolution output; ReLU (in place, after bn=Identity) came later


def test_draw_inception_names_every_branch_layer():
    row = INCEPTION_ROWS[0]  # inception (3a): 64 | 96, 128 | 16, 32 | 32 on 192 channels
    ax = draw_inception(googlenet.GoogLeNet(variant="paper").inception3a)
    texts = [t.get_text() for t in ax.texts if t.get_text()]  # arrows are empty texts
    assert sorted(texts) == sorted([
        "previous layer: 192 channels", "filter concatenation: 256 channels",
        f"1x1 conv, {row.n1x1}", f"1x1 conv, {row.n3x3_reduce}", f"3x3 conv, {row.n3x3}",
        f"1x1 conv, {row.n5x5_reduce}", f"5x5 conv, {row.n5x5}", "3x3 max pool",
        f"1x1 conv, {row.pool_proj}"])
    naive = torch.nn.Module()  # Figure 2a: no reductions; the pool passes its 192 channels on
    naive.branch1, naive.branch2 = torch.nn.Conv2d(192, 64, 1), torch.nn.Conv2d(192, 128, 3)
    naive.branch3, naive.branch4 = torch.nn.Conv2d(192, 32, 5), torch.nn.MaxPool2d(3, 1, 1)
    texts = [t.get_text() for t in draw_inception(naive).texts if t.get_text()]
    assert "filter concatenation: 416 channels" in texts and "5x5 conv, 32" in texts
    assert len(texts) == 6
    matplotlib.pyplot.close("all")
