"""Forward hooks, the one way the package looks at (or changes) what a submodule outputs.

:func:`hooked` attaches a function to named submodules for the length of a ``with`` block, in the
mode asked for, and always restores the model's train/eval mode and removes the hooks, even when
the forward pass raises. :func:`recording` is the common case: it collects the outputs in a dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping

from torch import Tensor, nn

OnOutput = Callable[[str, Tensor], Tensor | None]  # (name, output) -> None, or a replacement output


@contextlib.contextmanager
def hooked(model: nn.Module, hooks: Mapping[str, OnOutput], *, train: bool | None = False) -> Iterator[None]:
    """Within the block, each named submodule's output goes through its function (which may replace it).

    ``train``: the mode to run in (False: eval, True: train, None: leave it). ``""`` names the model.
    """
    was_training = model.training
    handles = []
    try:
        for name, on_output in hooks.items():
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name, on_output=on_output: on_output(name, o)))
        if train is not None:
            model.train(train)
        yield
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def recording(
    model: nn.Module, names: Iterable[str], *, clone: bool = False, train: bool | None = False
) -> Iterator[dict[str, Tensor]]:
    """Within the block, the named submodules' outputs of the latest forward pass, by name.

    ``clone``: keep detached copies (GoogLeNet's ReLUs work in place and would change the originals);
    otherwise the outputs themselves, with their autograd history.
    """
    outputs: dict[str, Tensor] = {}

    def keep(name: str, output: Tensor) -> None:
        outputs[name] = output.detach().clone() if clone else output

    with hooked(model, dict.fromkeys(names, keep), train=train):
        yield outputs
