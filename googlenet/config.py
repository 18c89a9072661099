"""What a training run is: :class:`TrainConfig`, its recipes, and the checks on every field.

``TrainConfig(recipe="paper")`` is the paper's recipe on the paper's network (``variant="paper"``);
any field given explicitly overrides the recipe's value. Each field is also a command-line flag of
``python -m googlenet.train`` (its ``help`` is the flag's help), and a value outside its range raises
a ConfigError that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .architecture import AUX_LOSS_WEIGHT
from .data import DATASETS, canonical_name
from .device import AMP
from .errors import ConfigError
from .model import STEMS, VARIANTS

SCHEDULES = ("onecycle", "linear", "cosine", "step", "constant")
AVERAGES = ("none", "ema", "polyak")
SMALL_STEM_BELOW = 100  # px: images smaller than this get the small 3x3/1 stem (training and benchmark)

# Fields a recipe sets; in TrainConfig they default to None, "the recipe's value".
# Each recipe names the network it trains: the fast recipe's high learning rate needs batch norm
# (the torchvision layout); the paper's recipe trains the paper's network.
# The paper (section 6): asynchronous SGD, momentum 0.9, learning rate cut by 4% every 8 epochs,
# Polyak averaging for the final model. Its base learning rate and weight decay are not given;
# 0.01 and 2e-4 are those of Caffe's BVLC GoogLeNet reproduction.
RECIPES: dict[str, dict[str, Any]] = {
    "fast": {
        "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "schedule": "onecycle", "warmup": 0.15, "step_every": 8, "step_gamma": 0.96,
        "label_smoothing": 0.1, "aux_weight": AUX_LOSS_WEIGHT, "average": "none", "ema_decay": 0.999,
        "variant": "torchvision", "epochs": 10, "tta": False, "progressive_sizes": [],
    },
    "paper": {
        "batch_size": 128, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False,
        "weight_decay": 2e-4, "schedule": "step", "warmup": 0.0, "step_every": 8, "step_gamma": 0.96,
        "label_smoothing": 0.0, "aux_weight": AUX_LOSS_WEIGHT, "average": "polyak", "ema_decay": 0.999,
        "variant": "paper", "epochs": 10, "tta": False, "progressive_sizes": [],
    },
    # Aimed at 94% on Fashion-MNIST at 28 px within minutes on a CPU (issue 27). Tuned on a
    # validation split, one seed, by epochs (book/results/speedrun/README.md has the runs): batch 256
    # at 0.2, between the range test's loss minimum (0.15) and its blow-up (0.29); a linear decay
    # to zero after a 10% warm-up; flip test-time augmentation (+0.2 to +0.5 points). Progressive
    # resizing (16, 20 then 28 px) saved FLOPs but lost as much accuracy as they would have bought,
    # and an EMA of the weights added 0.1 point at the end, within one seed's noise: neither is kept.
    # 10 epochs: 94.49% on the held-out images, the fewest that cleared 94% by two standard errors
    # of a 10,000-image accuracy (0.24 points); 8 epochs: 93.92%, 6: 93.53%.
    "speedrun": {
        "batch_size": 256, "optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "schedule": "linear", "warmup": 0.1, "step_every": 8, "step_gamma": 0.96,
        "label_smoothing": 0.1, "aux_weight": AUX_LOSS_WEIGHT, "average": "none", "ema_decay": 0.999,
        "variant": "torchvision", "epochs": 10, "tta": True, "progressive_sizes": [],
    },
}


def stem_for(image_size: int) -> str:
    """The stem an image size calls for: ``"small"`` below :data:`SMALL_STEM_BELOW` px, else ImageNet's."""
    return "small" if image_size < SMALL_STEM_BELOW else "imagenet"


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> tuple[Callable[[float], bool], str]:
    """A check that a number lies in a range, and the range in words."""
    def ok(v: float) -> bool:
        above = lo is None or (v > lo if lo_open else v >= lo)
        return above and (hi is None or (v < hi if hi_open else v <= hi))
    if hi is None:
        return ok, f"{'>' if lo_open else '>='} {lo}"
    return ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def flag(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field whose ``help`` (and ``choices``, ``check``...) the command line reuses.

    A list default becomes a fresh copy for every instance; a list field is a flag of one or more values.
    """
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


def check_fields(config: Any) -> None:
    """Raise a :class:`~googlenet.errors.ConfigError` for a field outside its ``choices`` or its
    ``check``; a list is checked item by item, and None passes where it is the default."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            choices = f.metadata.get("choices")
            if choices and item not in choices:
                raise ConfigError(f"{f.name} must be one of {tuple(choices)}, got {item!r}")
            if "check" in f.metadata:
                ok, expected = f.metadata["check"]
                if isinstance(item, bool) or not isinstance(item, int | float) or not ok(item):
                    raise ConfigError(f"{f.name} must be a number {expected}, got {item!r}")


def _recipe(help: str, **extra: Any) -> Any:
    """A field whose default is the recipe's value."""
    return flag(None, help + " (default: the recipe's)", **extra)


AT_LEAST_1, NON_NEGATIVE = _range(1), _range(0)
POSITIVE, FRACTION = _range(0, lo_open=True), _range(0, 1, hi_open=True)


@dataclass
class TrainConfig:
    """Everything one training run needs; field ``batch_size`` is the flag ``--batch-size``.

    Fields left at None take the value of ``recipe`` (:data:`RECIPES`): ``"fast"``, a modern
    one-cycle recipe on the torchvision layout (batch norm), ``"paper"``, the paper's SGD with a
    step schedule and Polyak averaging on the paper's network, or ``"speedrun"``, the fast recipe made
    for few epochs (batch 256, a linear schedule, flip test-time augmentation).
    The values are resolved when the config is made, so ``dataclasses.replace(config, recipe=...)``
    keeps the old recipe's values: make a new ``TrainConfig(recipe=..., ...)`` instead.
    """

    # data
    dataset: str = flag("fashion_mnist", "dataset to train on", choices=DATASETS)
    data_root: str | None = flag(None, "folder holding the datasets (for 'folder': the ImageFolder tree "
                                       "with train/ and val/); default: $GOOGLENET_DATA or ./data")
    download: bool = flag(False, "download the dataset if it is missing (needs internet)")
    image_size: int | None = flag(None, "side of the training images (default: the dataset's own, 224 "
                                        "for image files); in-memory datasets are resized on the device",
                                  check=AT_LEAST_1)
    subset: int | None = flag(None, "use only this many images of each split (a fixed random sample)",
                              check=AT_LEAST_1)
    val_split: int = flag(0, "hold out this many training images (a fixed random sample) and evaluate on "
                             "them instead of the test set, to tune without looking at it (0: the test set)",
                          check=NON_NEGATIVE)
    augment: bool = flag(True, "random crops and horizontal flips of the training images")
    on_device: bool = flag(True, "keep in-memory datasets (Fashion-MNIST, CIFAR-10) on the GPU and "
                                 "augment there")
    workers: int | None = flag(None, "loader processes decoding image files, started once per run "
                                     "(0: decode in the main process; default: the device's, up to 8 "
                                     "feeding a GPU, half the cores on a CPU)", check=NON_NEGATIVE)
    # model
    variant: str | None = _recipe("'torchvision' (batch norm) or 'paper' (as published)",
                                  choices=VARIANTS)
    stem: str = flag("auto", f"'small' keeps small images at full resolution; auto: small below "
                             f"{SMALL_STEM_BELOW} px", choices=("auto", *STEMS))
    aux_logits: bool = flag(True, "train with the two auxiliary classifiers")
    dropout: float | None = flag(None, "dropout before the classifier (default: the variant's)",
                                 check=FRACTION)
    # optimisation
    recipe: str = flag("fast", "'fast' (one-cycle SGD, label smoothing; the torchvision variant), "
                               "'paper' (SGD, step schedule, Polyak averaging; the paper's variant) or "
                               "'speedrun' (fast, for few epochs: batch 256, a linear schedule, flip "
                               "test-time augmentation); other flags override the recipe's values",
                       choices=tuple(RECIPES))
    epochs: int | None = _recipe("passes over the training set", check=AT_LEAST_1)
    batch_size: int | None = _recipe("images per step (per process under torchrun)", check=AT_LEAST_1)
    optimizer: str | None = _recipe("'sgd' (with momentum) or 'adamw'", choices=("sgd", "adamw"))
    lr: float | None = _recipe("peak learning rate", check=POSITIVE)
    momentum: float | None = _recipe("SGD momentum", check=FRACTION)
    nesterov: bool | None = _recipe("Nesterov momentum")
    weight_decay: float | None = _recipe("L2 penalty on the weights", check=NON_NEGATIVE)
    schedule: str | None = _recipe("learning-rate schedule: onecycle (warm up, then cosine to zero), "
                                   "linear (warm up, then linear to zero), cosine (no warm-up), step (the "
                                   "paper's), constant", choices=SCHEDULES)
    warmup: float | None = _recipe("fraction of training spent warming up (onecycle, linear)", check=FRACTION)
    step_every: int | None = _recipe("step schedule: epochs between cuts", check=AT_LEAST_1)
    step_gamma: float | None = _recipe("step schedule: factor of each cut (0.96 = the paper's 4%)",
                                       check=_range(0, 1, lo_open=True))
    label_smoothing: float | None = _recipe("share of each target spread over all classes", check=FRACTION)
    aux_weight: float | None = _recipe("weight of each auxiliary classifier's loss (the paper's 0.3)",
                                       check=NON_NEGATIVE)
    average: str | None = _recipe("evaluate averaged weights: ema (updated every step) or polyak "
                                  "(uniform, every epoch)", choices=AVERAGES)
    ema_decay: float | None = _recipe("EMA: how much of the old average each step keeps",
                                      check=_range(0, 1, lo_open=True, hi_open=True))
    tta: bool | None = _recipe("test-time augmentation: evaluate each image and its mirror image, "
                               "averaging their logits")
    progressive_sizes: list[int] | None = _recipe(
        "progressive resizing: train at these image sizes in turn, each for an equal share of the "
        "training (e.g. 20 24 28, ending at the image size); none or one size: the image size throughout",
        check=AT_LEAST_1)
    # speed
    amp: str = flag("none", "mixed precision of training (evaluation runs in float32): bf16, fp16 (with a "
                            "gradient scaler), or auto (--amp alone: "
                            "bf16 where it is fast, fp16 on other GPUs, none on a CPU without native bf16)",
                    choices=AMP, const="auto")
    channels_last: bool = flag(False, "channels-last memory format (faster convolutions on most hardware)")
    compile: bool = flag(False, "torch.compile the model (compiling takes a minute or more; on the "
                                "book's 2-core CPU it slowed training down)")
    device: str = flag("auto", "cpu, cuda, cuda:1, mps, or auto (the best available)")
    # bookkeeping
    seed: int = flag(0, "random seed of the weights (the same on every process); each epoch's shuffle "
                        "(shared), augmentation and dropout (per process) use seeds derived from it, the "
                        "epoch and the process", check=NON_NEGATIVE)
    out_dir: str | None = flag(None, "where checkpoint.pt and metrics.json go (default: runs/<dataset>)")
    resume: bool = flag(False, "continue the run saved in --out-dir exactly where it stopped; refused if "
                               "a flag that changes the run differs from the saved run's")
    time_limit: float | None = flag(None, "stop cleanly after this many seconds of training; the schedule "
                                          "then runs on time instead of steps", check=POSITIVE)
    log_every: int = flag(20, "steps between entries of the step history (which also gets the last "
                               "steps of every epoch)", check=AT_LEAST_1)
    progress: bool = flag(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        self.dataset = canonical_name(self.dataset)
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, list(value) if isinstance(value, list) else value)
        check_fields(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or Path("runs") / self.dataset)


# Fields that may differ when a run is resumed: where the data and the results live, how fast and
# how chatty it is. Every other field changes what the run computes, so --resume refuses a change.
RESUMABLE_CHANGES = ("data_root", "download", "workers", "on_device", "device", "compile", "out_dir",
                     "resume", "log_every", "progress")


def changed_fields(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """``"name: saved -> now"`` for each field that differs from a saved run's and changes the run.

    A field the saved run does not name was added to the package after it: the run behaved as that
    field's default does (its recipe's value, for a field a recipe sets).
    """
    now = {f.name: getattr(config, f.name) for f in fields(config)}
    recipe = RECIPES.get(saved.get("recipe", config.recipe), {})
    before = {f.name: saved[f.name] if f.name in saved else recipe.get(
        f.name, f.default if f.default is not MISSING else f.default_factory()) for f in fields(config)}
    return [f"{k}: {before[k]!r} -> {v!r}" for k, v in now.items()
            if k not in RESUMABLE_CHANGES and before[k] != v]
