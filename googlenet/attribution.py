"""Which pixels and which parts of the network a decision rests on.

Three attributions, each a few lines (the tests check them against Captum's implementations):
:func:`grad_cam` (Selvaraju et al., 2017) at one layer, :func:`integrated_gradients` (Sundararajan
et al., 2017) and :func:`occlusion` (Zeiler and Fergus, 2014). Then the branches of the Inception
modules: :func:`zeroed` silences one branch with a forward hook, :func:`branch_ablation` measures the
accuracy without each of them (re-running only the layers after the module, :func:`run_from`),
:func:`branch_shares` how much of the evidence for each decision (gradient times activation) each
branch carries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .features import BRANCHES, capture, inception_names
from .hooks import hooked, recording
from .model import InceptionAux


def _picked(logits: Tensor, target: Tensor) -> Tensor:
    """Each image's logit of its own target class."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def grad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str) -> Tensor:
    """Grad-CAM at ``layer``: ReLU of the channels weighted by their mean gradient, (N, H, W)."""
    with recording(model, [layer], train=None) as outputs:
        logits = model(x)
    (grad,) = torch.autograd.grad(_picked(logits, target).sum(), outputs[layer])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * outputs[layer]).sum(1).relu().detach()


def integrated_gradients(model: nn.Module, x: Tensor, target: Tensor, baseline: Tensor | None = None,
                         steps: int = 32) -> Tensor:
    """Integrated gradients from ``baseline`` (zeros) to ``x``, midpoint rule with ``steps`` points."""
    baseline = torch.zeros_like(x) if baseline is None else baseline
    total = torch.zeros_like(x)
    for alpha in (torch.arange(steps) + 0.5) / steps:
        point = (baseline + alpha * (x - baseline)).requires_grad_()
        (grad,) = torch.autograd.grad(_picked(model(point), target).sum(), point)
        total += grad
    return (x - baseline) * total / steps


@torch.no_grad()
def occlusion(model: nn.Module, x: Tensor, target: Tensor, window: int = 16, stride: int = 8,
              value: float = 0.0) -> Tensor:
    """How much the target logit drops when a ``window`` square is set to ``value``; per pixel, the
    mean drop over the windows that cover it."""
    h, w = x.shape[-2:]
    if (h - window) % stride or (w - window) % stride:
        raise ValueError(f"windows of {window} px every {stride} px do not tile {h}x{w} px")
    full = _picked(model(x), target)
    drop, count = torch.zeros_like(x), torch.zeros_like(x)
    for top in range(0, h - window + 1, stride):
        for left in range(0, w - window + 1, stride):
            covered = x.clone()
            covered[..., top:top + window, left:left + window] = value
            change = (full - _picked(model(covered), target)).view(-1, 1, 1, 1)
            drop[..., top:top + window, left:left + window] += change
            count[..., top:top + window, left:left + window] += 1
    return drop / count


@contextlib.contextmanager
def zeroed(model: nn.Module, branch: str) -> Iterator[None]:
    """Within the block, the named branch (e.g. ``"inception4a.branch3"``) outputs zeros."""
    with hooked(model, {branch: lambda name, output: torch.zeros_like(output)}, train=None):
        yield


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250) -> float:
    """Share of ``images`` the model (in eval mode) classifies as ``labels``."""
    model.eval()
    right = sum((model(x).argmax(1) == y).sum().item()
                for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True))
    return right / len(labels)


def run_from(model: nn.Module, name: str, x: Tensor) -> Tensor:
    """The rest of an eval-mode forward pass, from the output ``x`` of the top-level layer ``name``
    (the layers run in registration order, auxiliary heads skipped, flattened before the classifier)."""
    names = [n for n, m in model.named_children() if not isinstance(m, InceptionAux)]
    for later in names[names.index(name) + 1:]:
        layer = model.get_submodule(later)
        x = layer(x.flatten(1) if isinstance(layer, nn.Linear) else x)
    return x


@torch.no_grad()
def branch_ablation(model: nn.Module, images: Tensor, labels: Tensor,
                    batch_size: int = 250) -> dict[str, list[float]]:
    """Accuracy with each branch of each Inception module zeroed: {module: [branch1..branch4]}.

    Zeroing a branch zeroes its channels of the module's output, so each module's output is
    computed once per batch and only the layers after it run again (as :func:`zeroed` would give).
    """
    model.eval()
    names = inception_names(model)
    right = {n: [0] * len(BRANCHES) for n in names}
    for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        outputs = capture(model, x, names)
        for n in names:
            start = 0
            for b, width in enumerate(branch_widths(model.get_submodule(n))):
                ablated = outputs[n].clone()
                ablated[:, start:start + width] = 0
                right[n][b] += (run_from(model, n, ablated).argmax(1) == y).sum().item()
                start += width
    return {n: [r / len(labels) for r in row] for n, row in right.items()}


def branch_shares(model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, list[float]]:
    """Each branch's share of |gradient x activation| of the true class's logit at its module's
    output, summed over images and positions: {module: [branch1..branch4]}, each row summing to 1."""
    names = inception_names(model)
    with recording(model, names) as outputs:
        logits = model(images)
    grads = torch.autograd.grad(_picked(logits, labels).sum(), [outputs[n] for n in names])
    shares = {}
    for n, grad in zip(names, grads, strict=True):
        evidence = (grad * outputs[n]).abs().sum(dim=(0, 2, 3))
        parts = evidence.split(branch_widths(model.get_submodule(n)))
        per_branch = torch.stack([part.sum() for part in parts])
        shares[n] = (per_branch / per_branch.sum()).tolist()
    return shares


def branch_widths(module: nn.Module) -> list[int]:
    """Channels each branch of an Inception module outputs: those of its last convolution."""
    return [[m for m in getattr(module, b).modules() if isinstance(m, nn.Conv2d)][-1].out_channels
            for b in BRANCHES]
