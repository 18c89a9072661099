"""Load torchvision's GoogLeNet weights into :class:`googlenet.GoogLeNet`."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from .model import GoogLeNet


def from_torchvision(
    source: nn.Module | Mapping[str, Tensor], *, transform_input: bool | None = None
) -> GoogLeNet:
    """Our ``variant="torchvision"`` model carrying the weights of a torchvision GoogLeNet.

    ``source`` is a ``torchvision.models.GoogLeNet`` or its ``state_dict()``. The number of
    classes and the presence of auxiliary heads are read from the weights; ``transform_input``
    defaults to the module's setting, or to False for a bare state dict (torchvision's ImageNet
    weights expect True). Loading is strict: a key that does not match raises.
    """
    if isinstance(source, nn.Module):
        state = source.state_dict()
        if transform_input is None:
            transform_input = bool(getattr(source, "transform_input", False))
    elif isinstance(source, Mapping):
        state = source
    else:
        raise TypeError(
            f"from_torchvision expects a torchvision GoogLeNet or its state_dict, got {type(source).__name__}"
        )
    if "fc.weight" not in state or "conv1.conv.weight" not in state:
        raise ValueError("these weights are not a torchvision GoogLeNet state_dict (no conv1/fc keys)")
    num_classes, in_channels = state["fc.weight"].shape[0], state["conv1.conv.weight"].shape[1]
    model = GoogLeNet(
        num_classes,
        variant="torchvision",
        aux_logits=any(k.startswith("aux1.") for k in state),
        in_channels=in_channels,
        transform_input=bool(transform_input),
    )
    model.load_state_dict(state, strict=True)
    return model
