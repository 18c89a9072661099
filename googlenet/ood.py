"""How unlike the training images an image is: class-conditional Gaussians on pooled features.

A classifier answers every image with one of its classes, a photograph of an astronaut included. To
say when an image is unlike anything the weights were trained on, :func:`fit` fits a Gaussian per
class with one shared covariance (Lee et al., 2018) to the channel means of an early layer
(:data:`LAYERS`: ``conv3``, the stem's last convolution, 192 channels) on training images. An
image's distance is its squared Mahalanobis distance to the nearest class mean; the limit is a high
quantile of the distances of held-out training images, so about ``1 - quantile`` of the training
images are flagged. :meth:`Calibration.strangeness` is distance / limit: above 1, the image is
unlike the training images. The limit is set on training images only, never on test images.

Why ``conv3``: on the book's 28 px reference run it separates photographs (colour or grey) and
handwritten digits from Fashion-MNIST best of every layer tried; later layers' features, whose
classes the network was trained to separate, place many digits near a garment class.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from torch import Tensor, nn

from .hooks import hooked

LAYERS = ("conv3",)
CHUNK = 256  # images per forward pass


class _Enough(Exception):
    """Raised once every layer asked for has run: the rest of the network is skipped."""


@torch.no_grad()
def pooled(
    model: nn.Module, x: Tensor, layers: Sequence[str], logits: bool = True
) -> tuple[Tensor | None, dict[str, Tensor]]:
    """An eval-mode pass over ``x``: the logits (None with ``logits=False``, which stops the pass
    after the last layer needed) and each layer's channel means, (N, C) in float64."""
    out, means = [], {layer: [] for layer in layers}
    seen: set[str] = set()

    def keep(name: str, output: Tensor) -> None:
        means[name].append(output.mean(dim=(2, 3)).double().cpu())
        seen.add(name)
        if not logits and seen == set(layers):
            raise _Enough

    for batch in x.split(CHUNK):
        seen.clear()
        with hooked(model, dict.fromkeys(layers, keep)):
            try:
                out.append(model(batch))
            except _Enough:
                pass
    return (torch.cat(out) if logits else None), {layer: torch.cat(m) for layer, m in means.items()}


def _packed(t: Tensor) -> str:
    return base64.b64encode(t.float().contiguous().numpy().tobytes()).decode()


def _unpacked(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.float32).double()


@dataclass(frozen=True)
class Calibration:
    """What "like the training images" means for one set of weights (see the module's docstring)."""

    trained_on: str  # the training images' name, for messages ("Fashion-MNIST")
    layers: tuple[str, ...]
    means: dict[str, Tensor]  # (classes, dims): each class's mean projected features
    cholesky: dict[str, Tensor]  # (dims, dims): the shared covariance's Cholesky factor
    limits: dict[str, float]  # the held-out training images' distance quantile
    quantile: float
    images: tuple[int, int]  # training images fitted, held out

    def distances(self, features: dict[str, Tensor]) -> Tensor:
        """(N, layers): each image's squared Mahalanobis distance to its nearest class, per layer."""
        columns = []
        for layer in self.layers:
            z = features[layer].double()
            diff = (z[:, None, :] - self.means[layer][None]).flatten(0, 1)
            white = torch.linalg.solve_triangular(self.cholesky[layer], diff.T, upper=False).T
            columns.append(white.square().sum(1).view(len(z), -1).min(1).values)
        return torch.stack(columns, 1)

    def strangeness(self, features: dict[str, Tensor]) -> Tensor:
        """(N,): the largest ratio of distance to limit over the layers; above 1 is unlike training."""
        limits = torch.tensor([self.limits[layer] for layer in self.layers], dtype=torch.float64)
        return (self.distances(features) / limits).max(1).values

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the tensors as base64 float32 (the Cholesky factor's lower triangle)."""
        def lower(t: Tensor) -> Tensor:
            return t[tuple(torch.tril_indices(len(t), len(t)))]
        return {"trained_on": self.trained_on, "layers": list(self.layers), "quantile": self.quantile,
                "images": list(self.images), "limits": self.limits,
                "means": {k: [list(v.shape), _packed(v)] for k, v in self.means.items()},
                "cholesky": {k: [len(v), _packed(lower(v))] for k, v in self.cholesky.items()}}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Calibration:
        """The calibration :meth:`to_json` wrote."""
        def square(n: int, text: str) -> Tensor:
            full = torch.zeros(n, n, dtype=torch.float64)
            full[tuple(torch.tril_indices(n, n))] = _unpacked(text)
            return full
        return cls(record["trained_on"], tuple(record["layers"]),
                   {k: _unpacked(text).view(shape) for k, (shape, text) in record["means"].items()},
                   {k: square(n, text) for k, (n, text) in record["cholesky"].items()},
                   dict(record["limits"]), record["quantile"], tuple(record["images"]))


def fit(trained_on: str, features: dict[str, Tensor], labels: Tensor, held_out: dict[str, Tensor],
        quantile: float, shrinkage: float = 1e-4) -> Calibration:
    """Fit the class means and shared covariance on ``features``; set each limit on ``held_out``.

    ``shrinkage`` mixes a little of the covariance's mean variance into its diagonal, so that
    directions the training images barely use do not dominate the distance.
    """
    means, cholesky = {}, {}
    classes = int(labels.max()) + 1
    for layer, f in features.items():
        z = f.double()
        means[layer] = torch.stack([z[labels == c].mean(0) for c in range(classes)])
        centred = z - means[layer][labels]
        cov = centred.T @ centred / len(z)
        cov = (1 - shrinkage) * cov + shrinkage * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
        cholesky[layer] = torch.linalg.cholesky(cov)
    layers = tuple(features)
    unit = dict.fromkeys(layers, 1.0)
    distances = Calibration(trained_on, layers, means, cholesky, unit, quantile, (0, 0)).distances(held_out)
    # each layer's quantile, then all scaled so that ``1 - quantile`` of the held-out images is flagged
    per_layer = torch.quantile(distances, quantile, dim=0)
    scale = torch.quantile((distances / per_layer).max(1).values, quantile)
    limits = {layer: (per_layer[i] * scale).item() for i, layer in enumerate(layers)}
    return Calibration(trained_on, layers, means, cholesky, limits, quantile, (len(labels), len(distances)))


def load_calibration(name: str) -> Calibration | None:
    """The committed calibration of a reference run (``googlenet/calibration/<name>.json``), or None."""
    path = resources.files(__package__) / "calibration" / f"{name}.json"
    return Calibration.from_json(json.loads(path.read_text())) if path.is_file() else None
