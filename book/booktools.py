"""The book's own helpers and policy, kept apart from the `googlenet` library.

Chapters import this module from their own folder (`import booktools`): the notebooks run with the
chapter's folder as the working directory, locally, in the book build, under nbval and in Colab.
"""

import torchinfo
from torch import nn
from torchinfo.enums import Units


class _ReadableSummary(torchinfo.ModelStatistics):
    """torchinfo's statistics, with unit labels printed as "(M)", not "(Units.MEGABYTES)"."""

    def __repr__(self) -> str:
        text = super().__repr__()
        for unit in Units:  # Python 3.11+ formats a str-Enum member by its name
            text = text.replace(f"({unit})", f"({unit.value})")
        return text


def summary(model: nn.Module, **kwargs) -> torchinfo.ModelStatistics:
    """`torchinfo.summary(model, **kwargs)`, whose printout labels millions (M) and billions (G)."""
    stats = torchinfo.summary(model, **kwargs)
    stats.__class__ = _ReadableSummary  # same data; only the printout differs
    return stats
