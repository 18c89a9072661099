"""The paper's Table 1 as data: the one place where GoogLeNet's numbers live.

The network in :mod:`googlenet.model` is built from the channel columns of these rows, and the
book prints the published ``params``/``ops`` columns beside values measured from the live model.
"""

from __future__ import annotations

from typing import NamedTuple


class Row(NamedTuple):
    """One row of Table 1 in "Going Deeper with Convolutions" (Szegedy et al., 2015).

    ``name`` is the module that implements the row in :class:`googlenet.GoogLeNet`.
    ``params`` and ``ops`` are the paper's printed values (ops = multiply-adds), or None where
    the table leaves the cell empty.
    """

    name: str
    type: str
    patch: str
    output: tuple[int, int, int]  # height, width, channels at 224x224 input
    depth: int
    n1x1: int | None = None
    n3x3_reduce: int | None = None
    n3x3: int | None = None
    n5x5_reduce: int | None = None
    n5x5: int | None = None
    pool_proj: int | None = None
    params: float | None = None
    ops: float | None = None


K, M = 1e3, 1e6

PAPER_TABLE1: tuple[Row, ...] = (
    Row("conv1", "convolution", "7x7/2", (112, 112, 64), 1, params=2.7 * K, ops=34 * M),
    Row("maxpool1", "max pool", "3x3/2", (56, 56, 64), 0),
    Row("conv2", "convolution", "3x3/1", (56, 56, 192), 2, n3x3_reduce=64, n3x3=192,
        params=112 * K, ops=360 * M),
    Row("maxpool2", "max pool", "3x3/2", (28, 28, 192), 0),
    Row("inception3a", "inception", "", (28, 28, 256), 2, 64, 96, 128, 16, 32, 32, 159 * K, 128 * M),
    Row("inception3b", "inception", "", (28, 28, 480), 2, 128, 128, 192, 32, 96, 64, 380 * K, 304 * M),
    Row("maxpool3", "max pool", "3x3/2", (14, 14, 480), 0),
    Row("inception4a", "inception", "", (14, 14, 512), 2, 192, 96, 208, 16, 48, 64, 364 * K, 73 * M),
    Row("inception4b", "inception", "", (14, 14, 512), 2, 160, 112, 224, 24, 64, 64, 437 * K, 88 * M),
    Row("inception4c", "inception", "", (14, 14, 512), 2, 128, 128, 256, 24, 64, 64, 463 * K, 100 * M),
    Row("inception4d", "inception", "", (14, 14, 528), 2, 112, 144, 288, 32, 64, 64, 580 * K, 119 * M),
    Row("inception4e", "inception", "", (14, 14, 832), 2, 256, 160, 320, 32, 128, 128, 840 * K, 170 * M),
    Row("maxpool4", "max pool", "3x3/2", (7, 7, 832), 0),
    Row("inception5a", "inception", "", (7, 7, 832), 2, 256, 160, 320, 32, 128, 128, 1072 * K, 54 * M),
    Row("inception5b", "inception", "", (7, 7, 1024), 2, 384, 192, 384, 48, 128, 128, 1388 * K, 71 * M),
    Row("avgpool", "avg pool", "7x7/1", (1, 1, 1024), 0),
    Row("dropout", "dropout (40%)", "", (1, 1, 1024), 0),
    Row("fc", "linear", "", (1, 1, 1000), 1, params=1000 * K, ops=1 * M),
)
"""Table 1 as published, top to bottom; the softmax row is left out (it has no module)."""

INCEPTION_ROWS: tuple[Row, ...] = tuple(r for r in PAPER_TABLE1 if r.type == "inception")
STEM_CHANNELS = {"conv1": 64, "conv2": 64, "conv3": 192}  # conv2 is the stem's 3x3 reduce
AUX_AFTER = {"aux1": "inception4a", "aux2": "inception4d"}  # section 5 of the paper
AUX_CONV_CHANNELS, AUX_FC_UNITS, AUX_LOSS_WEIGHT = 128, 1024, 0.3


def inception_out_channels(row: Row) -> int:
    """Channels an Inception row outputs: its four branches concatenated."""
    return row.n1x1 + row.n3x3 + row.n5x5 + row.pool_proj


PAPER_DISCREPANCIES: dict[str, str] = {
    "conv1": "printed 2.7K params and 34M ops, but a 7x7 convolution from 3 to 64 channels has "
    "9.4K weights and, at 112x112 output, 118M multiply-adds",
    "inception4c": "printed 463K params, but its own channel numbers give 509K weights (+10%)",
    "inception5a": "printed 54M ops, but its own channel numbers give 51M multiply-adds at 7x7 (-5%)",
}
"""Where Table 1 disagrees with itself; the model follows the channel numbers, not these totals.

Besides these, the printed parameter counts of the other Inception rows are 2-4% below the count
of their own channel numbers (e.g. 3a: 159K printed, 163.7K computed), and 5a's is 3% above. Read
as K = 1024 (163,696 / 1024 = 159.9), most rows agree within 1%; 4c and 5a still do not.
"""
