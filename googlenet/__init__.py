"""GoogLeNet (Inception-v1) in plain PyTorch: the package the book imports."""

from .architecture import PAPER_TABLE1, Row
from .checkpoint import load_model, reference_checkpoint
from .compat import from_torchvision
from .model import (
    ConvBlock,
    GoogLeNet,
    GoogLeNetOutputs,
    Inception,
    InceptionAux,
    googlenet_loss,
)
from .table import MeasuredRow, table1

__all__ = [
    "PAPER_TABLE1", "Row", "load_model", "reference_checkpoint", "from_torchvision", "ConvBlock", "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception", "InceptionAux", "googlenet_loss", "MeasuredRow", "table1",
]
__version__ = "0.1.0"
