"""Feature visualisation by optimisation: the image that a channel, a neuron or a direction wants.

After Olah et al., "Feature Visualization" (Distill, 2017) and their library Lucid, whose facts and
constants carry over (this is a new, plain-PyTorch implementation). An image is a tensor of
parameters, turned into pixels by :class:`ImageParam`: in Fourier space with amplitudes scaled by
1/frequency (so that every frequency starts equally easy to change), for RGB also decorrelated with
ImageNet's colour covariance, then squashed into [0, 1] by a sigmoid. Each step of :func:`render`
draws random transformations (:func:`transform`: pad, jitter, scale, rotate, jitter), so that only
patterns that survive them grow. Objectives (:func:`channel`, :func:`neuron`, :func:`direction`,
:func:`diversity`) are scores to maximise; they add and scale like numbers. As in Lucid, an
objective can read a layer before its ReLU (:func:`pre_relu`): after it, a channel that is zero
on the starting image has no gradient, and its render never starts.

:mod:`googlenet.microscope` renders many channels of every layer with these pieces.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .features import BRANCHES, capture
from .hooks import hooked
from .model import ConvBlock

# Lucid's square root of ImageNet's colour correlation matrix (from its SVD), columns normalised by
# the largest column norm: multiplying decorrelated parameters by it gives correlated RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()

# Lucid's standard transformations are sized for its default 128-px renders; scaled to 96 px.
PAD, JITTER, JITTER_AFTER = 9, 6, 3
SCALES = [1 + (i - 5) / 50 for i in range(11)]  # 0.90 ... 1.10
ANGLES = [*range(-10, 11), *[0] * 5]  # degrees; no rotation is drawn more often


class ImageParam(nn.Module):
    """A batch of images as parameters: ``fourier`` (1/f scaled spectrum) or plain pixels, starting
    near the uniform grey level ``start``."""

    def __init__(self, batch: int, channels: int, size: int, *, fourier: bool = True,
                 decorrelate: bool = True, sd: float = 0.01, start: float = 0.5,
                 init: Tensor | None = None, generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < start < 1:
            raise ValueError(f"start must lie strictly between 0 and 1, got {start}")
        if init is not None and (fourier or decorrelate and channels == 3):
            raise ValueError("starting from given images needs fourier=False, decorrelate=False")
        self.size, self.fourier = size, fourier
        self.offset = math.log(start / (1 - start))  # the sigmoid's input that gives `start`
        self.decorrelate = decorrelate and channels == 3  # grayscale has no colours to decorrelate
        if fourier:
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            self.register_buffer("scale", 1 / torch.sqrt(fx**2 + fy**2).clamp_min(1 / size))
            shape = (batch, channels, size, size // 2 + 1, 2)  # real and imaginary parts
        else:
            shape = (batch, channels, size, size)
        self.raw = nn.Parameter(sd * torch.randn(shape, generator=generator))
        if init is not None:  # the sigmoid's inputs that give the images (kept off 0 and 1)
            self.offset = 0.0
            self.raw.data = torch.logit(init.detach().to(self.raw).clamp(0.01, 0.99))

    def forward(self) -> Tensor:
        """The images, in [0, 1]."""
        if self.fourier:
            spectrum = torch.view_as_complex(self.raw) * self.scale
            x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4
        else:
            x = self.raw
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", COLOR_CORRELATION.to(x), x)
        return torch.sigmoid(x + self.offset)


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


def _images(t: Tensor, batch: int | slice | None) -> Tensor:
    if isinstance(batch, int):
        batch = slice(batch, batch + 1)
    return t if batch is None else t[batch]


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


def diversity(layer: str, batch: slice | None = None) -> Objective:
    """Minus the mean cosine similarity of the images' Gram matrices at ``layer``: highest when the
    images of a batch (or of the slice ``batch`` of it) have different styles (for one image, 0)."""
    def score(a: dict[str, Tensor]) -> Tensor:
        t = _images(a[layer], batch).flatten(2)
        grams = F.normalize((t @ t.transpose(1, 2)).flatten(1), dim=1)
        similar = grams @ grams.T
        b = len(t)
        return -(similar.sum() - similar.diagonal().sum()) / max(b * (b - 1), 1)
    return Objective(score, {layer})


PRE_RELU = ":pre_relu"


def pre_relu(layer: str) -> str:
    """The name objectives use for ``layer`` before its ReLU(s), e.g. ``"inception4c:pre_relu"``."""
    return layer + PRE_RELU


def pre_relu_parts(model: nn.Module, layer: str) -> list[str]:
    """The submodules whose outputs, concatenated on channels, are ``layer`` before its ReLUs: the
    batch norm (or its identity) of the last :class:`ConvBlock`, of each branch in a module."""
    module = model.get_submodule(layer)
    owners = [layer] if isinstance(module, ConvBlock) else [f"{layer}.{b}" for b in BRANCHES]
    parts = []
    for owner in owners:
        blocks = [n for n, m in model.get_submodule(owner).named_modules() if isinstance(m, ConvBlock)]
        if not blocks:
            raise ValueError(f"{owner} holds no ConvBlock, so {layer} has no pre-ReLU value here")
        parts.append(".".join(filter(None, (owner, blocks[-1], "bn"))))
    return parts


class _Enough(Exception):
    """Raised by a hook once every layer an objective needs has run: the rest of the net is skipped."""


def activations(model: nn.Module, x: Tensor, layers: set[str]) -> dict[str, Tensor]:
    """Outputs of ``layers`` (names of submodules, or :func:`pre_relu` names) for input ``x``, with
    gradients, running the model only as far as needed."""
    parts = {name: pre_relu_parts(model, name.removesuffix(PRE_RELU)) if name.endswith(PRE_RELU)
             else [name] for name in layers}
    needed = {p for ps in parts.values() for p in ps}
    found: dict[str, Tensor] = {}

    def keep(name: str, output: Tensor) -> None:
        found[name] = output.clone()  # the in-place ReLU that follows a batch norm would change it
        if found.keys() == needed:
            raise _Enough

    with hooked(model, dict.fromkeys(needed, keep), train=None), contextlib.suppress(_Enough):
        model(x)
    return {name: torch.cat([found[p] for p in ps], 1) for name, ps in parts.items()}


def render(model: nn.Module, objective: Objective, *, batch: int = 1, size: int = 96,
           channels: int | None = None, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
           steps: int = 256, lr: float = 0.05, fourier: bool = True, decorrelate: bool = True,
           robust: bool = True, start: float = 0.5, init: Tensor | None = None,
           seed: int = 0) -> Tensor:
    """Optimise ``batch`` images of ``size`` px to maximise ``objective`` with Adam; images in [0, 1].

    ``mean`` and ``std`` normalise the images as the model's inputs were; ``robust`` applies
    :func:`transform` at every step; ``fourier``, ``decorrelate`` and ``start`` (the grey level the
    ascent starts from) or ``init`` (images in [0, 1] to start from, in pixels) choose
    :class:`ImageParam`.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    channels = channels or len(mean)
    image = ImageParam(batch, channels, size, fourier=fourier, decorrelate=decorrelate, start=start,
                       init=init, generator=generator).to(device)
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


# --------------------------------------------------------------------------- channels and classes
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
