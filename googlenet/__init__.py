"""GoogLeNet (Inception-v1) in plain PyTorch: the package the book imports.

Layers, each importing only from those above it: ``architecture`` (Table 1 as data) and ``errors``
(the mistakes the commands report in one line); ``model``; ``device``; ``hooks`` (the one forward-hook
capture) and ``files`` (the one atomic writer); then ``compat``, ``table``, ``receptive``,
``features``, ``optimize``, ``checkpoint``, ``data`` (datasets), ``metrics``, ``plots``; then
``loaders``, ``weights`` (the builder :func:`googlenet` and :class:`GoogLeNet_Weights`, as
torchvision's), ``attribution`` (Grad-CAM, integrated gradients, occlusion, branch ablation) and
``visualize`` (feature visualisation); then
``config``, ``provenance`` and ``ood`` (how unlike the training images an image is); then ``engine``
(the training loop, ``googlenet.engine.train``); then the command lines' ``cli``; then ``train``,
``evaluate``, ``predict``, the benchmark ``bench`` and ``microscope`` (many channels of every layer,
rendered and ranked, for a web page). The book's production commands (the GPU report, the release
of the reference weights, the calibration of ``ood``) live beside the book, in ``book/``, not in
this package.
"""

from .architecture import PAPER_TABLE1, Row
from .checkpoint import load_model
from .compat import from_torchvision
from .config import TrainConfig
from .model import (
    ConvBlock,
    GoogLeNet,
    GoogLeNetOutputs,
    Inception,
    InceptionAux,
    googlenet_loss,
)
from .table import MeasuredRow, table1
from .weights import GoogLeNet_Weights, googlenet, reference_checkpoint

__all__ = [
    "PAPER_TABLE1", "Row", "load_model", "reference_checkpoint", "from_torchvision", "ConvBlock", "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception", "InceptionAux", "googlenet_loss", "MeasuredRow", "table1", "TrainConfig",
    "GoogLeNet_Weights", "googlenet",
]
__version__ = "0.1.0"
