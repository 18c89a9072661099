"""Feature visualisation by optimisation: the image that a channel, a neuron or a direction wants.

After Olah et al., "Feature Visualization" (Distill, 2017) and their library Lucid, whose facts and
constants carry over (this is a new, plain-PyTorch implementation). An image is a tensor of
parameters, turned into pixels by :class:`ImageParam`: in Fourier space with amplitudes scaled by
1/frequency (so that every frequency starts equally easy to change), for RGB also decorrelated with
ImageNet's colour covariance, then squashed into [0, 1] by a sigmoid. Each step of :func:`render`
draws random transformations (:func:`transform`: pad, jitter, scale, rotate, jitter), so that only
patterns that survive them grow. Objectives (:func:`channel`, :func:`neuron`, :func:`direction`,
:func:`diversity`) are scores to maximise; they add and scale like numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

    def keep(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            found[name] = output
            if found.keys() == layers:
                raise _Enough
        return hook

    hooks = [model.get_submodule(name).register_forward_hook(keep(name)) for name in layers]
    try:
        model(x)
    except _Enough:
        pass
    finally:
        for h in hooks:
            h.remove()
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
    channels = channels or len(mean)
    image = ImageParam(batch, channels, size, fourier=fourier, decorrelate=decorrelate,
                       generator=generator)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    m, s = (torch.tensor(v).view(1, -1, 1, 1) for v in (mean, std))
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            x = image()
            x = transform(x, generator) if robust else x
            score = objective(activations(model, (x - m) / s, objective.layers))
            (image.raw.grad,) = torch.autograd.grad(-score, image.raw)
            optimizer.step()
    finally:
        model.train(was_training)
    with torch.no_grad():
        return image()
