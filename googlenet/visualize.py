"""Feature visualisation by optimisation: the image that a channel, a neuron or a direction wants.

After Olah et al., "Feature Visualization" (Distill, 2017) and their library Lucid, whose facts and
constants carry over (this is a new, plain-PyTorch implementation). An image is a tensor of
parameters, turned into pixels by :class:`ImageParam`: in Fourier space with amplitudes scaled by
1/frequency (so that every frequency starts equally easy to change), for RGB also decorrelated with
ImageNet's colour covariance, then squashed into [0, 1] by a sigmoid. Each step of :func:`render`
draws random transformations (:func:`transform`: pad, jitter, scale, rotate, jitter), so that only
patterns that survive them grow. Objectives (:func:`channel`, :func:`neuron`, :func:`direction`,
:func:`diversity`) are scores to maximise; they add and scale like numbers.

The command line renders sheets: for each layer, the channels most selective for one class on
training images, their visualisations, and their strongest test images::

    python -m googlenet.visualize --out book/results/inside
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import load_model
from .cli import Parser, checked, command_line, run_main
from .config import AT_LEAST_1
from .data import load_data
from .device import pick_device
from .features import capture, inception_names
from .files import write_json
from .hooks import hooked
from .loaders import make_loader
from .weights import reference_checkpoint

# Lucid's square root of ImageNet's colour correlation matrix (from its SVD), columns normalised by
# the largest column norm: multiplying decorrelated parameters by it gives correlated RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()

# Lucid's standard transformations are sized for its default 128-px renders; scaled to 96 px.
PAD, JITTER, JITTER_AFTER = 9, 6, 3
SCALES = [1 + (i - 5) / 50 for i in range(11)]  # 0.90 ... 1.10
ANGLES = [*range(-10, 11), *[0] * 5]  # degrees; no rotation is drawn more often


class ImageParam(nn.Module):
    """A batch of images as parameters: ``fourier`` (1/f scaled spectrum) or plain pixels."""

    def __init__(self, batch: int, channels: int, size: int, *, fourier: bool = True,
                 decorrelate: bool = True, sd: float = 0.01, generator: torch.Generator | None = None):
        super().__init__()
        self.size, self.fourier = size, fourier
        self.decorrelate = decorrelate and channels == 3  # grayscale has no colours to decorrelate
        if fourier:
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            self.register_buffer("scale", 1 / torch.sqrt(fx**2 + fy**2).clamp_min(1 / size))
            shape = (batch, channels, size, size // 2 + 1, 2)  # real and imaginary parts
        else:
            shape = (batch, channels, size, size)
        self.raw = nn.Parameter(sd * torch.randn(shape, generator=generator))

    def forward(self) -> Tensor:
        """The images, in [0, 1]."""
        if self.fourier:
            spectrum = torch.view_as_complex(self.raw) * self.scale
            x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4
        else:
            x = self.raw
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", COLOR_CORRELATION.to(x), x)
        return torch.sigmoid(x)


def _pick(options: Sequence, generator: torch.Generator | None) -> float:
    return options[int(torch.randint(len(options), (), generator=generator))]


def jitter(x: Tensor, d: int, generator: torch.Generator | None = None) -> Tensor:
    """A random crop ``d`` pixels smaller on each axis (the whole batch shifted alike)."""
    dy, dx = (int(v) for v in torch.randint(d + 1, (2,), generator=generator))
    return x[..., dy:dy + x.shape[-2] - d, dx:dx + x.shape[-1] - d]


def transform(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Lucid's standard set: pad (grey), jitter, random scale, random rotation, jitter again."""
    x = jitter(F.pad(x, [PAD] * 4, value=0.5), JITTER, generator)
    scale, angle = _pick(SCALES, generator), math.radians(_pick(ANGLES, generator))
    cos, sin = math.cos(angle), math.sin(angle)  # the output size does the scaling
    theta = x.new_tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(x), 2, 3)
    size = [len(x), x.shape[1], round(x.shape[-2] * scale), round(x.shape[-1] * scale)]
    x = F.grid_sample(x, F.affine_grid(theta, size, align_corners=False), align_corners=False,
                      padding_mode="border")
    return jitter(x, JITTER_AFTER, generator)


class Objective:
    """A score to maximise, computed from the activations of ``layers``; ``+``, ``-``, ``*`` combine."""

    def __init__(self, score: Callable[[dict[str, Tensor]], Tensor], layers: set[str]):
        self.score, self.layers = score, set(layers)

    def __call__(self, activations: dict[str, Tensor]) -> Tensor:
        return self.score(activations)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda a: self(a) + other(a), self.layers | other.layers)

    def __radd__(self, other: int) -> Objective:  # so that sum(objectives) works
        if other != 0:
            return NotImplemented
        return self

    def __mul__(self, k: float) -> Objective:
        return Objective(lambda a: k * self(a), self.layers)

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)


def _images(t: Tensor, batch: int | None) -> Tensor:
    return t if batch is None else t[batch:batch + 1]


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
    """Mean activation of channel ``n`` of ``layer`` over positions (and images, or one ``batch``)."""
    return Objective(lambda a: _images(a[layer], batch)[:, n].mean(), {layer})


def neuron(layer: str, n: int, batch: int | None = None) -> Objective:
    """Activation of channel ``n`` at the centre of ``layer``'s feature map."""
    def score(a: dict[str, Tensor]) -> Tensor:
        t = _images(a[layer], batch)
        return t[:, n, t.shape[-2] // 2, t.shape[-1] // 2].mean()
    return Objective(score, {layer})


def direction(layer: str, vector: Tensor, batch: int | None = None) -> Objective:
    """Dot product of ``layer``'s activation vectors (channels) with ``vector``, mean over positions."""
    return Objective(lambda a: torch.einsum("bchw,c->bhw", _images(a[layer], batch),
                                            vector.to(a[layer])).mean(), {layer})


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of the images' Gram matrices at ``layer``: highest when the
    images of a batch have different styles (for a batch of one it is 0)."""
    def score(a: dict[str, Tensor]) -> Tensor:
        t = a[layer].flatten(2)
        grams = F.normalize((t @ t.transpose(1, 2)).flatten(1), dim=1)
        similar = grams @ grams.T
        b = len(t)
        return -(similar.sum() - similar.diagonal().sum()) / max(b * (b - 1), 1)
    return Objective(score, {layer})


class _Enough(Exception):
    """Raised by a hook once every layer an objective needs has run: the rest of the net is skipped."""


def activations(model: nn.Module, x: Tensor, layers: set[str]) -> dict[str, Tensor]:
    """Outputs of ``layers`` for input ``x``, with gradients, running the model only as far as needed."""
    found: dict[str, Tensor] = {}

    def keep(name: str, output: Tensor) -> None:
        found[name] = output
        if found.keys() == layers:
            raise _Enough

    with hooked(model, dict.fromkeys(layers, keep), train=None), contextlib.suppress(_Enough):
        model(x)
    return found


def render(model: nn.Module, objective: Objective, *, batch: int = 1, size: int = 96,
           channels: int | None = None, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
           steps: int = 256, lr: float = 0.05, fourier: bool = True, decorrelate: bool = True,
           robust: bool = True, seed: int = 0) -> Tensor:
    """Optimise ``batch`` images of ``size`` px to maximise ``objective`` with Adam; images in [0, 1].

    ``mean`` and ``std`` normalise the images as the model's inputs were; ``robust`` applies
    :func:`transform` at every step; ``fourier`` and ``decorrelate`` choose :class:`ImageParam`.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    channels = channels or len(mean)
    image = ImageParam(batch, channels, size, fourier=fourier, decorrelate=decorrelate,
                       generator=generator).to(device)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    with hooked(model, {}):  # eval mode, restored after
        for _ in range(steps):
            x = image()
            x = transform(x, generator) if robust else x
            score = objective(activations(model, (x - m) / s, objective.layers))
            (image.raw.grad,) = torch.autograd.grad(-score, image.raw)
            optimizer.step()
    with torch.no_grad():
        return image()


# --------------------------------------------------------------------------- sheets of channels
SHEET_LAYERS = ("conv1", "conv2", "conv3")  # then every Inception module


def class_means(means: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean of each channel (columns) of per-image channel means over each class's images (rows)."""
    return torch.stack([means[labels == c].mean(0) for c in range(num_classes)])


def selectivity(means: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per channel: (preferred class's mean - mean of the others) / their sum, from 0 to 1."""
    per_class = class_means(means, labels, num_classes)
    top = per_class.max(0).values
    rest = (per_class.sum(0) - top) / (num_classes - 1)
    return (top - rest) / (top + rest).clamp_min(1e-12)


@torch.no_grad()
def channel_means(model: nn.Module, images: Tensor, layers: Sequence[str], batch_size: int = 250
                  ) -> dict[str, Tensor]:
    """Each image's mean activation of every channel of each layer: {layer: (N, C)}."""
    parts: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    for x in images.split(batch_size):
        for layer, out in capture(model, x, list(layers)).items():
            parts[layer].append(out.mean(dim=(2, 3)).cpu())
    return {layer: torch.cat(v) for layer, v in parts.items()}


def _split(data, split: str, n: int, device) -> tuple[Tensor, Tensor]:
    """``n`` images of a split, prepared as for the model (training images: a seeded sample, not
    augmented), and their labels."""
    loader = make_loader(data, split, n, device, augment=False)
    x, y = next(iter(loader))
    return x.to(device), y.cpu()


def _draw_sheet(layer: str, renders: Tensor, tops: Tensor, channels: list[int], path: Path) -> None:
    """One layer's sheet: a column per channel, its visualisation above its strongest test images."""
    import matplotlib.pyplot as plt

    rows = 1 + tops.shape[1]
    fig, axes = plt.subplots(rows, len(channels), figsize=(0.9 * len(channels), 0.9 * rows + 0.3),
                             squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05})
    for j, c in enumerate(channels):
        axes[0, j].imshow(renders[j, 0].cpu(), cmap="gray_r", vmin=0, vmax=1)
        axes[0, j].set_title(str(c), fontsize=7)
        for i in range(tops.shape[1]):
            axes[1 + i, j].imshow(tops[j, i, 0].cpu(), cmap="gray_r")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("visualised", fontsize=7)
    axes[1, 0].set_ylabel("top test", fontsize=7)
    fig.suptitle(layer, fontsize=8, y=0.995)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Render a sheet per layer (conv1-conv3, every Inception module) and a JSON of its numbers."""
    parser = Parser(prog="python -m googlenet.visualize",
                    description="Feature visualisations of a trained GoogLeNet, one sheet per layer: the "
                                "channels most class-selective on training images, each rendered by "
                                "optimisation above its strongest test images.")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint (default: the book's 96-px Fashion-MNIST reference network)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the sheets and sheets.json")
    parser.add_argument("--channels", type=checked(int, AT_LEAST_1), default=6,
                        help="channels per layer (default: 6)")
    parser.add_argument("--steps", type=checked(int, AT_LEAST_1), default=256,
                        help="optimisation steps per render (default: 256)")
    parser.add_argument("--images", type=checked(int, AT_LEAST_1), default=2000,
                        help="training images that choose the channels, and test images ranked "
                             "(default: 2000)")
    parser.add_argument("--top", type=checked(int, AT_LEAST_1), default=4,
                        help="strongest test images shown per channel (default: 4)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps, or auto (default)")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint or reference_checkpoint("fashion_mnist_96"), map_location=device)
    data = load_data(meta["dataset"], image_size=meta["image_size"], mean=meta["mean"], std=meta["std"])
    layers = [*SHEET_LAYERS, *inception_names(model)]
    n_classes = len(meta["classes"])
    train_x, train_y = _split(data, "train", args.images, device)
    test_x, _ = _split(data, "test", args.images, device)
    chosen_on = channel_means(model, train_x, layers)
    ranked_on = channel_means(model, test_x, layers)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": command_line("googlenet.visualize", sys.argv[1:] if argv is None else argv),
              "steps": args.steps, "images": args.images, "layers": {}}
    for layer in layers:
        channels = selectivity(chosen_on[layer], train_y, n_classes).topk(args.channels).indices.tolist()
        objective = sum(channel(layer, c, batch=i) for i, c in enumerate(channels))
        renders = render(model, objective, batch=len(channels), size=meta["image_size"],
                         mean=meta["mean"], std=meta["std"], steps=args.steps)
        m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (meta["mean"], meta["std"]))
        with torch.no_grad():
            reached = activations(model, (renders - m) / s, {layer})[layer].mean(dim=(2, 3))
        best = ranked_on[layer][:, channels].topk(args.top, dim=0)
        tops = test_x[best.indices.T.to(device)] * s + m  # back to [0, 1]
        _draw_sheet(layer, renders, tops, channels, args.out / f"{layer}.png")
        record["layers"][layer] = {
            "channels": channels,
            "visualisation": [reached[i, c].item() for i, c in enumerate(channels)],
            "best_test_image": best.values[0].tolist(),
        }
        print(f"{layer}: channels {channels}, visualisation / best test image "
              + " ".join(f"{v / t:.1f}" for v, t in zip(record["layers"][layer]["visualisation"],
                                                       record["layers"][layer]["best_test_image"],
                                                       strict=True)), flush=True)
    write_json(record, args.out / "sheets.json")
    return record


if __name__ == "__main__":
    run_main(main)
