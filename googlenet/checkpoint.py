"""Checkpoints: the one place their schema is written and read.

A checkpoint is a plain dict of tensors, numbers and strings (so the safe ``weights_only`` loader
reads it), written atomically: the model's constructor arguments, class names, normalisation
(:data:`METADATA_KEYS`), the training weights, the averaged (EMA/Polyak) weights if any, and,
for a run that can resume, the optimizer and gradient-scaler state, the progress counters and
the metrics history. No random state: every epoch seeds its own from the run's seed, the epoch
and the rank (see :func:`~googlenet.device.seed_for`), so a resumed run needs none. The ``rng``
key stays, always None, so that the layout is the same as before (older files' values are
ignored). :func:`load_model` rebuilds a ready-to-use model from the file alone.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .device import check_available
from .errors import NotFoundError, UserError
from .files import write_atomically
from .model import GoogLeNet

FORMAT = "googlenet-checkpoint"
VERSION = 1
METADATA_KEYS = ("model_kwargs", "classes", "mean", "std", "dataset", "image_size", "resize")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used: corrupt, truncated, not ours, or for another model."""


def save_checkpoint(
    path: str | Path, meta: dict[str, Any], model: nn.Module | dict[str, torch.Tensor], *,
    average: AveragedModel | None = None, optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None, progress: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint to ``path`` atomically (a temporary file, then a rename).

    ``meta`` holds :data:`METADATA_KEYS`; ``model`` is the model or its weights. Passing the
    ``optimizer`` makes the checkpoint resumable: it then also keeps the scaler state.
    ``progress`` holds the counters the training loop resumes from (epoch, step, ...).
    """
    state = {k: meta[k] for k in METADATA_KEYS}
    state.update(progress or {}, history=history, average=None, optimizer=None, scaler=None, rng=None)
    state["model"] = model.state_dict() if isinstance(model, nn.Module) else model
    if average is not None:
        state["average"] = {"weights": average.module.state_dict(), "updates": int(average.n_averaged)}
    if optimizer is not None:
        state.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict() if scaler else None)
    return write_atomically(path, partial(torch.save, {"format": FORMAT, "version": VERSION, **state}))


def restore_training(
    state: dict[str, Any], model: nn.Module, *, average: AveragedModel | None,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
) -> None:
    """Load a resumable checkpoint's weights, average, optimizer and scaler state in place."""
    check_resumable(state, "this checkpoint")
    check_state_dict(model, state["model"])
    model.load_state_dict(state["model"])
    if average is not None and state["average"] is not None:
        average.module.load_state_dict(state["average"]["weights"])
        average.n_averaged.fill_(state["average"]["updates"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])


def check_resumable(state: dict[str, Any], where: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``state`` holds what resuming needs (the optimizer's state)."""
    if state.get("optimizer") is None:
        raise CheckpointError(f"{where} holds no optimizer state (an evaluation-only copy?): "
                              "it cannot be resumed")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) or raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no checkpoint at {path}; train one with `python -m googlenet.train`")
    if isinstance(map_location, str | torch.device):
        check_available(map_location)  # a missing device is not a corrupt file
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds here (zip, pickle, EOF, unsupported global)
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or truncated, or not a PyTorch "
            f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Delete it or use another copy."
        ) from e
    return validate_state(state, path)


def validate_state(state: Any, where: str | Path) -> dict[str, Any]:
    """``state`` if it is a googlenet checkpoint's contents, else :class:`CheckpointError`."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where} is a PyTorch file but not a googlenet checkpoint (no {FORMAT!r} tag)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{where} has checkpoint format version {state.get('version')}, expected {VERSION}"
        )
    missing = [k for k in (*METADATA_KEYS, "model") if k not in state]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}; it was not written by googlenet.train")
    return state


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` fits ``model`` exactly (names and shapes).

    Checked before loading, because ``load_state_dict`` copies the matching tensors before it
    complains about the rest: this way a model is never left half-loaded.
    """
    expected = model.state_dict()
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} saved, {tuple(v.shape)} expected"
        for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        f"{label}: " + "; ".join(items[:4]) + (" ..." if len(items) > 4 else "")
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
        if items
    ]
    if problems:
        raise CheckpointError(f"the {what}'s weights do not fit this model ({' | '.join(problems)})")


def evaluation_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate: the averaged (EMA/Polyak) ones when training kept an average."""
    average = state.get("average")
    return average["weights"] if average else state["model"]


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[GoogLeNet, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint alone; return ``(model in eval mode, metadata)``.

    The metadata holds ``classes``, ``mean``, ``std``, ``dataset``, ``model_kwargs``,
    ``image_size``, ``resize`` (short side before the centre crop), ``epoch`` and ``history``.
    Raises :class:`CheckpointError` for a corrupt, truncated or mismatched file.
    """
    state = read_checkpoint(path, map_location)
    model = model_from_state(state, path)
    meta = {k: state[k] for k in METADATA_KEYS}
    meta.update(epoch=state.get("epoch"), history=state.get("history"))
    return model.to(map_location).eval(), meta


def model_from_state(state: dict[str, Any], where: str | Path, **overrides: Any) -> GoogLeNet:
    """The model a checkpoint describes, carrying its evaluation weights (``overrides``: e.g. ``blocks``)."""
    kwargs = {**state["model_kwargs"], **overrides}
    try:
        model = GoogLeNet(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: cannot build a GoogLeNet from {kwargs!r}: {e}") from e
    weights = evaluation_weights(state)
    check_state_dict(model, weights, what=f"checkpoint {where}")
    model.load_state_dict(weights)
    return model


def export_for_evaluation(
    src: str | Path, dst: str | Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Write a small evaluation-only copy of a training checkpoint: the evaluation weights (averaged
    ones if kept) in ``dtype`` and the metadata; no optimizer or scaler state, and no auxiliary
    heads (they only add to the training loss; torchvision's pretrained weights drop them the same way)."""
    state = read_checkpoint(src)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in evaluation_weights(state).items()
               if not k.startswith(("aux1.", "aux2."))}
    meta = {**state, "model_kwargs": {**state["model_kwargs"], "aux_logits": False}}
    progress = {"epoch": state.get("epoch"), "step": state.get("step")}
    return save_checkpoint(dst, meta, weights, progress=progress)

