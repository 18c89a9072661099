"""The model against its two independent references: the paper's Table 1 and torchvision's GoogLeNet."""

import io
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import googlenet
from googlenet.architecture import INCEPTION_ROWS, PAPER_DISCREPANCIES, inception_out_channels
from googlenet.model import ConvBlock, GoogLeNet, Inception, InceptionAux

torch.manual_seed(0)
SIZES = {"imagenet": 224, "small": 32}


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
@pytest.mark.parametrize("stem", ["imagenet", "small"])
@pytest.mark.parametrize("aux", [True, False])
def test_shapes_train_and_eval(variant, stem, aux):
    in_ch = 1 if stem == "small" else 3
    model = googlenet.GoogLeNet(7, variant=variant, stem=stem, aux_logits=aux, in_channels=in_ch)
    x = torch.randn(2, in_ch, SIZES[stem], SIZES[stem])
    model.train()
    out = model(x)
    if aux:
        assert isinstance(out, googlenet.GoogLeNetOutputs)
        assert [tuple(t.shape) for t in out] == [(2, 7)] * 3
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)
    assert model.features(x).shape[1] == 1024


def _own_count(row, in_channels):
    """Weights and multiply-adds of an Inception row from the paper's channel numbers alone."""
    w = in_channels * (row.n1x1 + row.n3x3_reduce + row.n5x5_reduce + row.pool_proj)
    w += 9 * row.n3x3_reduce * row.n3x3 + 25 * row.n5x5_reduce * row.n5x5
    bias = row.n1x1 + row.n3x3_reduce + row.n3x3 + row.n5x5_reduce + row.n5x5 + row.pool_proj
    return w + bias, w * row.output[0] * row.output[1]


def test_paper_variant_matches_table1():
    measured = {r.name: r for r in googlenet.table1(googlenet.GoogLeNet(variant="paper", aux_logits=False))}
    for row in googlenet.PAPER_TABLE1:
        assert measured[row.name].output == row.output, row.name
    in_ch = 192
    for row in INCEPTION_ROWS:
        got = measured[row.name]
        assert (got.params, got.macs) == _own_count(row, in_ch), row.name
        params_off = abs(got.params - row.params) / row.params
        macs_off = abs(got.macs - row.ops) / row.ops
        if row.name in PAPER_DISCREPANCIES:  # the paper disagrees with its own channel numbers
            assert params_off > 0.10 or macs_off > 0.05, f"{row.name} is listed but agrees with the paper"
        else:
            assert params_off <= 0.10 and macs_off <= 0.06, row.name
        in_ch = inception_out_channels(row)
    conv1 = measured["conv1"]  # 7x7x3x64 weights + 64 biases; 112*112*64 outputs of 7*7*3 MACs each
    assert (conv1.params, conv1.macs) == (7 * 7 * 3 * 64 + 64, 112 * 112 * 64 * 7 * 7 * 3)
    assert conv1.params > 3 * googlenet.PAPER_TABLE1[0].params  # the printed 2.7K is not this layer


def test_torchvision_variant_parameter_totals():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(googlenet.GoogLeNet(variant="torchvision")) == 13_004_888
    assert count(googlenet.GoogLeNet(variant="torchvision", aux_logits=False)) == 6_624_904


def _random_torchvision(aux, transform_input):
    tv = torchvision.models.googlenet(weights=None, aux_logits=aux, transform_input=transform_input,
                                      init_weights=True)
    for m in tv.modules():  # non-trivial batch-norm statistics, so that eval mode really uses them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return tv.eval()


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("transform_input", [True, False])
def test_torchvision_parity(aux, transform_input):
    tv = _random_torchvision(aux, transform_input)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = tv(x)
        for ours in (googlenet.from_torchvision(tv),
                     googlenet.from_torchvision(tv.state_dict(), transform_input=transform_input)):
            assert ours.aux_logits == aux and ours.transform_input == transform_input
            assert (ours.eval()(x) - expected).abs().max().item() <= 1e-5


def test_torchvision_training_outputs_match():
    tv = _random_torchvision(True, False).train()
    ours = googlenet.from_torchvision(tv).train()
    x = torch.randn(2, 3, 224, 224)
    torch.manual_seed(1)
    a = tv(x)
    torch.manual_seed(1)
    b = ours(x)
    for t, o in zip(a, b, strict=True):
        assert (t - o).abs().max().item() <= 1e-4


def test_state_dict_keys_equal_torchvision():
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    ours = googlenet.GoogLeNet(variant="torchvision")
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours.load_state_dict(tv.state_dict(), strict=True)


def test_from_torchvision_rejects_other_weights():
    with pytest.raises(ValueError, match="not a torchvision GoogLeNet"):
        googlenet.from_torchvision(torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(TypeError, match="state_dict"):
        googlenet.from_torchvision("weights.pt")


def test_loss_helper_uses_paper_weight():
    model = googlenet.GoogLeNet(5, variant="torchvision", stem="small").train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    out = model(x)
    by_hand = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux_logits1, y)
                                                      + F.cross_entropy(out.aux_logits2, y))
    assert torch.allclose(googlenet.googlenet_loss(out, y), by_hand)
    assert torch.allclose(googlenet.googlenet_loss(out.logits, y), F.cross_entropy(out.logits, y))


BAD_INPUTS = [
    (dict(), torch.randn(1, 1, 224, 224), r"expected 3 input channel\(s\), got 1.*in_channels=1"),
    (dict(), torch.randn(1, 3, 24, 24), r"24x24 px is too small.*at least 31x31.*stem=\"small\""),
    (dict(stem="small"), torch.randn(1, 3, 12, 12), r"too small for the 'small' stem.*at least 16x16"),
    (dict(), torch.randn(3, 224, 224), r"4-D batch \(N, C, H, W\).*unsqueeze\(0\)"),
    (dict(), torch.zeros(1, 3, 224, 224, dtype=torch.uint8), r"floating-point.*x\.float\(\)"),
    (dict(), torch.randn(1, 3, 160, 160), r"5x5/3 to 4x4.*224 px.*aux_logits=False"),
]


@pytest.mark.parametrize("kwargs,x,message", BAD_INPUTS)
def test_bad_input_is_explained_before_the_network_runs(kwargs, x, message):
    model = googlenet.GoogLeNet(10, **kwargs).train()
    ran = []
    model.conv1.register_forward_hook(lambda *a: ran.append(1))
    with pytest.raises(ValueError, match=message):
        model(x)
    assert not ran


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_classes=0), "num_classes must be an integer >= 1"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(dropout_aux=-0.1), r"dropout_aux must be in \[0, 1\)"),
    (dict(variant="inception-v3"), "unknown variant 'inception-v3'; expected one of"),
    (dict(stem="cifar"), "unknown stem 'cifar'; expected one of"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        googlenet.GoogLeNet(**kwargs)


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
@pytest.mark.parametrize("stem", ["imagenet", "small"])
def test_min_input_size_is_where_pytorch_itself_stops(variant, stem):
    model = googlenet.GoogLeNet(3, variant=variant, stem=stem, aux_logits=False).eval()
    n = model.min_input_size
    with torch.no_grad():
        model._forward(torch.randn(1, 3, n, n), with_aux=False)  # the layers alone, no check_input
        with pytest.raises(RuntimeError):  # PyTorch's own error, deep inside a pooling layer
            model._forward(torch.randn(1, 3, n - 1, n - 1), with_aux=False)
        with pytest.raises(ValueError, match="too small"):  # ours, before any layer runs
            model(torch.randn(1, 3, n - 1, n - 1))


def test_inputs_torchvision_runs_ours_runs_too():
    tv = torchvision.models.googlenet(weights=None, init_weights=False, aux_logits=False).eval()
    ours = googlenet.from_torchvision(tv).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 15, 15)  # torchvision documents 15x15 as its minimum
        assert torch.equal(ours(x), tv(x))
        with pytest.raises(RuntimeError):
            tv(torch.randn(1, 3, 14, 14))
    assert ours.min_input_size == 15


def test_torch_compile_and_export_capture_the_whole_graph():
    model = googlenet.GoogLeNet(10, variant="torchvision", stem="small", in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        assert torch.allclose(compiled(x), expected, atol=1e-5)
        exported = torch.export.export(model, (x,))
        assert torch.allclose(exported.module()(x), expected, atol=1e-5)


def test_onnx_export():
    onnx = pytest.importorskip("onnx")
    model = googlenet.GoogLeNet(10, variant="torchvision", stem="small", in_channels=1).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the input checks (shapes are fixed)
        torch.onnx.export(model, (torch.randn(1, 1, 28, 28),), buffer, dynamo=False,
                          input_names=["images"], output_names=["logits"])
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["logits"]


class _GroupNormSiLU(nn.Module):
    """A reader's own convolution block: group norm and SiLU in place of batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.norm = nn.GroupNorm(8 if out_channels % 8 == 0 else 1, out_channels)

    def forward(self, x):
        return F.silu(self.norm(self.conv(x)))


def test_blocks_default_is_the_plain_model():
    torch.manual_seed(0)
    plain = GoogLeNet(10, variant="torchvision")
    torch.manual_seed(0)
    explicit = GoogLeNet(10, variant="torchvision", blocks=[ConvBlock, Inception, InceptionAux])
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(plain.eval()(x), explicit.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_blocks_swap_every_convolution_block(variant):
    model = GoogLeNet(10, variant=variant, in_channels=1, stem="small",
                      blocks=[_GroupNormSiLU, Inception, InceptionAux])
    counts = {t: sum(isinstance(m, t) for m in model.modules()) for t in (_GroupNormSiLU, ConvBlock)}
    default = sum(isinstance(m, ConvBlock) for m in GoogLeNet(10, variant=variant).modules())
    assert counts == {_GroupNormSiLU: default, ConvBlock: 0}
    assert model.train()(torch.randn(2, 1, 28, 28)).logits.shape == (2, 10)


def test_blocks_swap_the_inception_and_auxiliary_blocks():
    class Wider(Inception):  # a reader's Inception block: one more layer after the concatenation
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.after = nn.Identity()

        def forward(self, x):
            return self.after(super().forward(x))

    class Aux(InceptionAux):
        pass

    model = GoogLeNet(10, variant="torchvision", blocks=[ConvBlock, Wider, Aux])
    assert sum(isinstance(m, Wider) for m in model.modules()) == 9
    assert isinstance(model.aux1, Aux) and isinstance(model.aux2, Aux)


def test_blocks_needs_three():
    with pytest.raises(ValueError, match="blocks takes 3 callables"):
        GoogLeNet(10, blocks=[ConvBlock])
