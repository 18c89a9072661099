"""The ``python -m googlenet.train`` command line: one flag per :class:`~googlenet.TrainConfig` field.

::

    python -m googlenet.train --dataset cifar10 --epochs 30 --amp --channels-last
    torchrun --nproc_per_node=4 -m googlenet.train --dataset imagenette --recipe paper

The loop itself is :func:`googlenet.engine.train`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli import Parser, add_config_flags, command_line, run_main
from .config import TrainConfig
from .engine import NonFiniteLossError, train

EXAMPLES = """examples:
  python -m googlenet.train --dataset fashion_mnist --epochs 2
  python -m googlenet.train --dataset cifar10 --epochs 30 --amp --channels-last --out-dir runs/cifar10
  python -m googlenet.train --dataset folder --data-root my_images --image-size 128 --epochs 20
  python -m googlenet.train --recipe paper --dataset imagenette --epochs 60
  python -m googlenet.train --recipe speedrun --amp --channels-last --out-dir runs/speedrun
  python -m googlenet.train --out-dir runs/cifar10 --dataset cifar10 --epochs 30 --resume
  torchrun --nproc_per_node=4 -m googlenet.train --dataset cifar10 --epochs 30 --amp

limitations:
  --resume continues bit-exactly only with the saved run's settings (it refuses others, except
  where data and results live, --workers, --device, --compile, --progress and --log-every) and
  on the same kind of device and library versions, also under torchrun (with as many
  processes). Under torchrun every process starts from the same weights; shuffling is shared,
  augmentation and dropout differ per process (each seeded from --seed, epoch and process).
  A loss that becomes NaN or infinite stops the run at once (exit status 2).
"""


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per :class:`TrainConfig` field."""
    parser = Parser(
        prog="python -m googlenet.train", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train GoogLeNet (Inception-v1) on Fashion-MNIST, CIFAR-10, Imagenette or your own\n"
                    "folder of images. Progress bars show loss, accuracy and speed; every epoch saves\n"
                    "checkpoint.pt and metrics.json in --out-dir (--resume continues from them).\n"
                    "Then `python -m googlenet.evaluate --checkpoint OUT_DIR/checkpoint.pt` measures it\n"
                    "and `python -m googlenet.predict IMAGE --checkpoint OUT_DIR/checkpoint.pt` classifies.",
    )
    add_config_flags(parser, TrainConfig)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags into a :class:`TrainConfig` and train."""
    args = sys.argv[1:] if argv is None else argv
    config = TrainConfig(**vars(build_parser().parse_args(args)))
    return train(config, command=command_line("googlenet.train", args))


if __name__ == "__main__":
    run_main(main, (NonFiniteLossError,))
