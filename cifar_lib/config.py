"""``TrainConfig``: every knob of a training run, checked once, when the config is built.

The command line, the notebooks and the Python API all build a ``TrainConfig`` (through
``cifar_lib.recipes.configure``), so a bad value gets the same one-line ``ConfigError`` wherever
it comes from, before any data is loaded or any time is spent.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .batches import HALF_MEAN_STD
from .models import MODELS, UnknownModelError

OPTIMIZERS = ("adam", "sgd", "muon")
SCHEDULES = ("constant", "triangle")
FLIPS = (None, "random", "alternating")
PRECISIONS = ("auto", "gpu", "bf16", "fp16", "fp32")
CHANNELS_LAST = (True, False, "auto")


class ConfigError(ValueError):
    """A ``TrainConfig`` field with a value it cannot take; the message names field and range."""


@dataclass
class TrainConfig:
    """Every knob of a training run, grouped by what it controls. The defaults are the original
    notebook's recipe; ``cifar_lib.recipes`` names the others."""
    # model
    model: str = "simple_cnn"            # registry name (see cifar_lib.models.MODELS)
    model_kwargs: dict = field(default_factory=dict)
    # data: which images train, which are held out to choose things on
    val_fraction: float = 0.1            # share of the training images held out as the
                                         # validation split (data.split_validation): 5,000 of
                                         # CIFAR-10's 50,000, the same images for every run
    train_subset: int | None = None      # train on only the first N of the rest (quick runs)
    test_subset: int | None = None       # evaluate on only the first N test images
    # optimiser
    optimizer: str = "adam"              # "adam", "sgd" (Nesterov momentum) or "muon" (Muon for
                                         # conv filters, Nesterov SGD for the rest)
    lr: float = 1e-3                     # peak learning rate, for the mean loss over a batch
    momentum: float = 0.9                # SGD (and muon's SGD part: biases, head)
    muon_lr: float = 0.24                # muon only: the conv filters' learning rate ...
    muon_momentum: float = 0.6           # ... and momentum (see cifar_lib.muon)
    weight_decay: float = 0.0            # PyTorch's coupled L2, as the optimiser takes it
    bias_lr_scale: float = 1.0           # BatchNorm and whitening biases learn this much faster
    label_smoothing: float = 0.0         # the target gives the true class 1 − this, the rest
                                         # shared out evenly
    lookahead: bool = False              # average weights every 5 steps, copy back (airbench)
    # schedule
    epochs: int = 2
    batch_size: int = 128                # images per optimiser step
    schedule: str = "constant"           # "constant" or "triangle" (linear warm-up then decay)
    lr_start: float = 0.2                # triangle: lr multiplier at step 0 ...
    lr_peak_at: float = 0.23             # ... rising to 1 at this fraction of training ...
    lr_end: float = 0.07                 # ... and falling to this at the end
    whiten_bias_epochs: int = 0          # whitening-layer bias trains only this many epochs
    hardest_fraction: float | tuple = 1.0  # from epoch hardest_from_epoch on (0-based), each
    hardest_from_epoch: int = 0          # epoch trains on this fraction of the images, those with
                                         # the highest loss when last trained on (1: every image);
                                         # a tuple: one fraction per epoch from that epoch on
    # augmentation
    flip: str | None = None              # None, "random" or "alternating"
    translate: int = 0                   # max random shift in pixels (reflect-filled)
    brightness: float = 0.0              # random shift of each image's normalised values, ±this
    contrast: float = 0.0                # random scale of each image's values, 1 ± this
    crop_epochs: int = 0                 # the first N epochs train on random crop_size² windows:
    crop_size: int | tuple = 24          # fewer FLOPs per image while the net learns coarse things;
                                         # a tuple: one size per crop epoch
    crop_window: float | None = None     # crop epochs' windows: None, crop_size pixels; a
                                         # fraction, a side drawn in [it, 1] of the image's,
                                         # resized to crop_size (more of the object in view)
    mean: tuple = HALF_MEAN_STD[0]       # per-channel normalisation of the inputs
    std: tuple = HALF_MEAN_STD[1]
    # evaluation
    tta_level: int = 0                   # test-time augmentation for the final evaluation: 0 the
                                         # image, 1 + its mirror, 2 + shifted mirrors ...
    tta_fraction: float = 1.0            # ... of this fraction of the test images, least confident
    eval_every: int = 1                  # evaluate on the test set every N epochs (0: only at end)
    # hardware and reproducibility (the same result, only faster or slower)
    precision: str = "gpu"               # "gpu" (mixed on GPUs only), "auto" (also CPUs with native
                                         # bf16), "bf16", "fp16", "fp32" (see device.autocast_dtype)
    channels_last: bool | str = False    # True, False or "auto" (see device.use_channels_last)
    micro_batch: int | None = None       # compute each step this many images at a time, summing
                                         # their gradients: less memory at once (BatchNorm sees
                                         # each micro-batch alone)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def crop_size_at(self, epoch: int) -> int | None:
        """The crop size of 0-based ``epoch``, or None when it trains on whole images."""
        if epoch >= self.crop_epochs:
            return None
        return self.crop_size if _is_int(self.crop_size) else self.crop_size[epoch]

    def hardest_fraction_at(self, epoch: int) -> float:
        """The fraction of the images, the hardest, that 0-based ``epoch`` trains on."""
        if epoch < self.hardest_from_epoch:
            return 1.0
        if _is_number(self.hardest_fraction):
            return self.hardest_fraction
        return self.hardest_fraction[epoch - self.hardest_from_epoch]

    def fewest_hardest_fraction(self) -> float:
        """The smallest ``hardest_fraction_at`` over the run's epochs (1.0: every image always)."""
        return min(self.hardest_fraction_at(epoch) for epoch in range(self.epochs))

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}; "
                              f"valid: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _each(value) -> tuple | list:
    """A field that takes one value or one per epoch, as a sequence of its values."""
    return value if isinstance(value, (tuple, list)) else (value,)


def _check(ok: bool, name: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


def _one_of(name: str, value, choices) -> None:
    # Same type as well as equal: True == 1 and 2.0 == 2, but neither is a valid choice.
    ok = any(value is c or (type(value) is type(c) and value == c) for c in choices)
    _check(ok, name, "one of " + ", ".join(map(repr, choices)), value)


def validate(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` (or ``UnknownModelError``) for the first field out of range."""
    if cfg.model not in MODELS:
        raise UnknownModelError(f"unknown model {cfg.model!r}; valid names: "
                                f"{', '.join(sorted(MODELS))}")
    _check(isinstance(cfg.model_kwargs, dict), "model_kwargs", "a dict", cfg.model_kwargs)
    try:  # build it on the meta device: every argument checked, no memory or time spent
        with torch.device("meta"):
            MODELS[cfg.model](**cfg.model_kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model_kwargs {cfg.model_kwargs} do not fit model {cfg.model!r} "
                          f"({e}); pass model_kwargs={{}} for its defaults") from None
    for name in ("epochs", "batch_size"):
        _check(_is_int(getattr(cfg, name)) and getattr(cfg, name) >= 1, name,
               "a whole number ≥ 1", getattr(cfg, name))
    for name in ("whiten_bias_epochs", "translate", "eval_every", "seed", "crop_epochs",
                 "hardest_from_epoch"):
        _check(_is_int(getattr(cfg, name)) and getattr(cfg, name) >= 0, name,
               "a whole number ≥ 0", getattr(cfg, name))
    for name in ("train_subset", "test_subset", "micro_batch"):
        value = getattr(cfg, name)
        _check(value is None or (_is_int(value) and value >= 1), name,
               "None (all) or a whole number ≥ 1", value)
    _check(_is_number(cfg.val_fraction) and 0 <= cfg.val_fraction < 1, "val_fraction",
           "in [0, 1)", cfg.val_fraction)
    _check(_is_number(cfg.lr) and cfg.lr > 0, "lr", "a number > 0", cfg.lr)
    _check(_is_number(cfg.bias_lr_scale) and cfg.bias_lr_scale > 0, "bias_lr_scale",
           "a number > 0", cfg.bias_lr_scale)
    _check(_is_number(cfg.weight_decay) and cfg.weight_decay >= 0, "weight_decay",
           "a number ≥ 0", cfg.weight_decay)
    _check(_is_number(cfg.momentum) and 0 <= cfg.momentum < 1, "momentum", "in [0, 1)",
           cfg.momentum)
    _check(_is_number(cfg.muon_lr) and cfg.muon_lr > 0, "muon_lr", "a number > 0", cfg.muon_lr)
    _check(_is_number(cfg.muon_momentum) and 0 < cfg.muon_momentum < 1, "muon_momentum",
           "in (0, 1)", cfg.muon_momentum)
    _check(_is_number(cfg.label_smoothing) and 0 <= cfg.label_smoothing < 1, "label_smoothing",
           "in [0, 1)", cfg.label_smoothing)
    _check(_is_number(cfg.lr_peak_at) and 0 <= cfg.lr_peak_at <= 1, "lr_peak_at", "in [0, 1]",
           cfg.lr_peak_at)
    for name in ("lr_start", "lr_end"):
        _check(_is_number(getattr(cfg, name)) and getattr(cfg, name) >= 0, name, "a number ≥ 0",
               getattr(cfg, name))
    for name in ("brightness", "contrast"):
        _check(_is_number(getattr(cfg, name)) and 0 <= getattr(cfg, name) < 1, name, "in [0, 1)",
               getattr(cfg, name))
    sizes = _each(cfg.crop_size)
    _check(all(_is_int(s) and 16 <= s <= 32 for s in sizes) and (
           _is_int(cfg.crop_size) or len(sizes) == cfg.crop_epochs), "crop_size",
           f"a whole number in [16, 32] (pixels), or one per crop epoch ({cfg.crop_epochs} "
           f"of them)", cfg.crop_size)
    _check(cfg.crop_window is None or (_is_number(cfg.crop_window) and 0 < cfg.crop_window <= 1),
           "crop_window", "None or in (0, 1] (the smallest window side, a fraction of the "
           "image's)", cfg.crop_window)
    # SimpleCNN's flatten wants exactly 128×4×4 features: only airbench takes any size.
    _check(cfg.crop_epochs == 0 or cfg.model == "airbench", "crop_epochs",
           "0 for a model that needs 32×32 images (crops need model='airbench')", cfg.crop_epochs)
    _one_of("optimizer", cfg.optimizer, OPTIMIZERS)
    _one_of("schedule", cfg.schedule, SCHEDULES)
    _one_of("flip", cfg.flip, FLIPS)
    _one_of("precision", cfg.precision, PRECISIONS)
    _one_of("channels_last", cfg.channels_last, CHANNELS_LAST)
    _one_of("tta_level", cfg.tta_level, (0, 1, 2))
    fractions = _each(cfg.hardest_fraction)
    later = cfg.epochs - cfg.hardest_from_epoch
    # One fraction per epoch from hardest_from_epoch on needs such epochs (--quick trains one).
    _check(_is_number(cfg.hardest_fraction) or later >= 1, "hardest_from_epoch",
           f"below epochs ({cfg.epochs}) when hardest_fraction gives one fraction per epoch; "
           f"lower it, or give hardest_fraction as one number", cfg.hardest_from_epoch)
    _check(all(_is_number(f) and 0 < f <= 1 for f in fractions) and (
           _is_number(cfg.hardest_fraction) or len(fractions) == later), "hardest_fraction",
           f"in (0, 1], or one such number per epoch from hardest_from_epoch on ({later} of "
           f"them)", cfg.hardest_fraction)
    _check(_is_number(cfg.tta_fraction) and 0 < cfg.tta_fraction <= 1, "tta_fraction",
           "in (0, 1]", cfg.tta_fraction)
    _check(isinstance(cfg.lookahead, bool), "lookahead", "True or False", cfg.lookahead)
    _check(isinstance(cfg.device, str) and bool(cfg.device), "device",
           "a device name ('auto', 'cpu', 'cuda', 'cuda:N', 'mps')", cfg.device)
    for name in ("mean", "std"):
        value = getattr(cfg, name)
        _check(isinstance(value, (tuple, list)) and len(value) == 3
               and all(_is_number(v) for v in value), name, "three numbers (R, G, B)", value)
    _check(all(v > 0 for v in cfg.std), "std", "three numbers > 0", cfg.std)


def parse_override(text: str) -> tuple[str, object]:
    """'FIELD=VALUE' → (FIELD, VALUE as a Python literal, else the text itself)."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    try:
        return field.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return field.strip(), value  # a bare word: a string such as flip=random


def add_override_args(parser: argparse.ArgumentParser, more_help: str = "") -> None:
    """``--set FIELD=VALUE`` (repeatable) into ``args.overrides``, a list of (field, value)."""
    parser.add_argument("--set", dest="overrides", metavar="FIELD=VALUE", action="append",
                        type=parse_override, default=[],
                        help="override any TrainConfig field, as a Python literal (repeatable, "
                             "applied last), e.g. --set crop_epochs=3 --set label_smoothing=0.1"
                             + (f"; {more_help}" if more_help else ""))
