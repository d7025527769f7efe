"""The course's training recipes, by purpose, and ``configure``: the one way to turn a recipe
and overrides into a ``TrainConfig`` (used by the command line, the notebooks, the benchmarks
and the tests).

- ``original``: the original notebook's recipe: SimpleCNN, Adam 1e-3, batch 128, two epochs.
- ``airbench94``: Keller Jordan's airbench94 with its published hyperparameters (94% in ten
  epochs, as published): the anchor that ``fast`` is raced against.
- ``fast``: the course's own recipe, the default: airbench94's network trained with Muon, small
  resized windows in the early epochs, colour jitter, and from the second epoch on only the
  hardest images (written out below, field by field, and in lesson 01).
- ``short``: airbench94 narrowed and cut to four epochs, for slow machines.
- ``tiny``: airbench94 narrowed to reach the original's accuracy in one epoch.
- ``race64``: the Muon recipe sized to reach 64% as soon as possible (the time-to-64% race).

Every recipe holds out the same 5,000 training images as a validation split (``val_fraction``):
the temperature, the confidence threshold and other choices are made on them, never on the
test images.
"""
from __future__ import annotations

import copy

from .batches import CIFAR10_MEAN_STD
from .config import ConfigError, TrainConfig, _is_int
from .models import UnknownModelError

# airbench94 states lr=11.5 and weight_decay=0.0153 per 1024 images for a summed loss, scaled
# by 1024·(1 + 1/(1 − momentum)); for PyTorch's mean loss at batch 1024 that is lr ≈ 1.5 and a
# decay of 0.0020 per step, i.e. weight_decay = 0.0020 / 1.5.
_KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))
_AIRBENCH_LR = 11.5 / _KILOSTEP * 1024
_AIRBENCH_WD = 0.0153 * 1024 / _KILOSTEP / _AIRBENCH_LR

# airbench94_muon states its SGD lrs for a summed loss at batch 2000 (biases 0.053, head 0.67)
# and a decay of 2e-6·2000 per step. For PyTorch's mean loss multiply the lrs by the batch size;
# its head output is divided by 256 where ours is by 9, and an SGD lr acts on the product
# scale²·lr, so the head's lr here is 0.67·batch·(9/256)². Muon's steps do not depend on the
# loss's scale. The biases' lr over the head's, and the decay per step over the head's lr, are
# the same at every batch size.
_MUON_BATCH = 2000
_MUON_HEAD_LR = 0.67 * _MUON_BATCH * (9 / 256) ** 2
_MUON_BIAS_LR_SCALE = 0.053 * _MUON_BATCH / _MUON_HEAD_LR
_MUON_WEIGHT_DECAY = 2e-6 * _MUON_BATCH / _MUON_HEAD_LR

RECIPES: dict[str, TrainConfig] = {
    # The original notebook, exactly: SimpleCNN, Adam 1e-3, batch 128, 2 epochs, mean/std 0.5.
    "original": TrainConfig(),
    "airbench94": TrainConfig(
        model="airbench", model_kwargs={"widths": (64, 256, 256)},
        epochs=10,               # airbench94 trains 9.9 epochs; whole epochs keep resume simple
        batch_size=1024, optimizer="sgd", lr=_AIRBENCH_LR, momentum=0.85,
        weight_decay=_AIRBENCH_WD,
        bias_lr_scale=64.0,      # BatchNorm/whitening biases need a far larger step to matter
        schedule="triangle",     # short warm-up, then linear decay: most progress in few steps
        label_smoothing=0.2,     # soft targets: better calibrated, less over-confident logits
        lookahead=True,          # weight averaging: the weights drift less at the end
        whiten_bias_epochs=3,    # the whitening bias helps early, then only adds noise
        flip="alternating",      # each image both ways every two epochs, no repeats by chance
        translate=2,             # random ±2-pixel shifts: the main regulariser
        mean=CIFAR10_MEAN_STD[0], std=CIFAR10_MEAN_STD[1],
        tta_level=2,             # mirror + 1-pixel shifts at test time
        precision="auto",        # bf16 on Ampere+ GPUs and native-bf16 CPUs, fp16 on older GPUs
        channels_last="auto",    # the memory layout fast convolution kernels want (not on MPS)
    ),
    # The course's recipe, every field that differs from TrainConfig's defaults, top to bottom.
    "fast": TrainConfig(
        # model: airbench94's network (frozen whitening layer, three conv groups, scaled head)
        model="airbench", model_kwargs={"widths": (64, 256, 256)},
        # optimiser: Muon for the conv filters (orthogonalised momentum, cifar_lib.muon) ...
        optimizer="muon", muon_lr=0.17, muon_momentum=0.6,
        # ... Nesterov SGD for the head and the biases, which learn 64× faster; lr is the
        # head's for steps of 1,000 images, 0.67·1000·(9/256)² rounded
        batch_size=1000, lr=0.828, momentum=0.85, bias_lr_scale=_MUON_BIAS_LR_SCALE,
        weight_decay=_MUON_WEIGHT_DECAY,
        label_smoothing=0.2,     # soft targets: less over-confident logits
        # schedule: 10 epochs, the learning rates decaying linearly from the start to 0
        epochs=10, schedule="triangle", lr_start=1.0, lr_peak_at=0.0, lr_end=0.0,
        whiten_bias_epochs=3,    # the whitening bias trains 3 epochs, then stays fixed
        # the hardest images: after a first epoch on every image, each epoch trains only on
        # those with the highest loss when last trained on, 80% of them twice, then 60%
        hardest_fraction=(0.8, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6), hardest_from_epoch=1,
        # augmentation: both mirror images in turn, ±2-pixel shifts, colour jitter, and the
        # first 6 epochs on random windows (at least ¾ of the image's side) shrunk to 24×24
        # pixels (about half the FLOPs per image)
        flip="alternating", translate=2, brightness=0.1399, contrast=0.1308,
        crop_epochs=6, crop_size=24, crop_window=0.75,
        mean=CIFAR10_MEAN_STD[0], std=CIFAR10_MEAN_STD[1],
        # evaluation: mirror + shifted views at test time, only for the 30% least confident
        tta_level=2, tta_fraction=0.3,
        # hardware: bf16 where it is native, channels-last where it pays
        precision="auto", channels_last="auto",
    ),
}
# A shorter budget, for a learner on a slow CPU: airbench94 with about a seventh of the
# FLOPs per image (widths 32/64/64), for 4 epochs instead of 10.
RECIPES["short"] = RECIPES["airbench94"].replace(model_kwargs={"widths": (32, 64, 64)},
                                                 epochs=4)
# airbench94 sized for the original's 64% instead of 94%: widths 16/32/32 (about a twentieth of
# the FLOPs per image), one epoch.
RECIPES["tiny"] = RECIPES["airbench94"].replace(model_kwargs={"widths": (16, 32, 32)},
                                                epochs=1, batch_size=256, tta_level=0)
# Muon sized to reach 64% as soon as possible: one pass over 20,000 training images, every one
# whole. The whitening steps 2 pixels, so every later layer works on 16×16 instead of 31×31
# pixels, a quarter; widths 32/64/128 spend part of that saving on accuracy (about a twentieth
# of airbench94's FLOPs per image in all). Its learning rates are airbench94_muon's for steps
# of 2,000 images, used with steps of 250.
RECIPES["race64"] = RECIPES["fast"].replace(
    model_kwargs={"widths": (32, 64, 128), "whiten_stride": 2},
    epochs=1, batch_size=250, lr=_MUON_HEAD_LR, muon_lr=0.24, hardest_fraction=1.0,
    hardest_from_epoch=0, crop_epochs=0, crop_window=None, brightness=0.0, contrast=0.0,
    tta_level=0, tta_fraction=1.0, whiten_bias_epochs=1, train_subset=20_000)

# Other names of recipes (the same settings): refused with one line naming the recipe.
RENAMED = {"seed": "original", "fast_short": "short", "fast_small": "tiny"}
# Retired recipes: refused, naming the recipe that serves their purpose (other settings).
REPLACED = {"fast_muon": "fast", "fast_muon_crop": "fast", "fast_micro": "fast",
            "muon_small": "race64"}

# What a recipe reached when measured on the full data set: (mean test accuracy in %, with the
# recipe's own TTA; how many seeds; the record it comes from). The lesson 01_train quotes them
# beside its time estimates; they live here because the installed package (Colab) has no
# benchmarks/ folder, and tests/test_recipes.py checks each against its record. These records
# trained on all 50,000 training images (val_fraction=0).
EXPECTED_ACCURACY: dict[str, tuple[float, int, str]] = {
    "fast": (94.05, 5, "benchmarks/results/train_cpu-bf16.json"),
    "airbench94": (94.09, 2, "benchmarks/results/train_cpu-bf16.json"),
    "short": (85.44, 2, "benchmarks/results/archive/ablation_airbench94.json"),
    "tiny": (65.75, 1, "benchmarks/results/archive/train_fast.json"),
    "original": (66.30, 1, "benchmarks/results/archive/train_fast.json"),
}

# A smoke test of any recipe (CI, first tries): one epoch on 2,048 training and 500 test
# images, at most 256 per batch so that even one epoch takes several steps.
QUICK = dict(epochs=1, train_subset=2048, test_subset=500, max_batch_size=256)


def get_recipe(name: str) -> TrainConfig:
    """A copy of recipe ``name``'s ``TrainConfig`` (changing it leaves the recipe as it is);
    another name of a recipe, or a retired one, gets a one-line error naming the recipe to use."""
    if name in RENAMED:
        raise ConfigError(f"recipe {name!r} is now called {RENAMED[name]!r}: use "
                          f"--recipe {RENAMED[name]} (recipe={RENAMED[name]!r})")
    if name in REPLACED:
        raise ConfigError(f"recipe {name!r} no longer exists; {REPLACED[name]!r} serves its "
                          f"purpose with other settings: use --recipe {REPLACED[name]} "
                          f"(recipe={REPLACED[name]!r})")
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; valid names: {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def configure(recipe: str | TrainConfig = "fast", *, quick: bool = False,
              **overrides) -> TrainConfig:
    """Recipe ``recipe`` (a name, or a recipe's ``TrainConfig`` changed before), shrunk to a
    smoke test when ``quick``, with ``overrides`` applied.

    Overrides are ``TrainConfig`` fields; a value of None means "the recipe's own" (so a
    notebook or the command line can pass every knob through unchanged). Changing ``model``
    without ``model_kwargs`` resets them to the new model's defaults (the recipe's belong to
    its own model), and its crop epochs to none (crops need the airbench model). Changing
    the number of epochs (or ``quick``) without ``crop_epochs`` keeps the recipe's share of
    crop epochs, rounded down, so that a shorter run still ends on whole images; without
    ``hardest_fraction`` or ``hardest_from_epoch`` it keeps the recipe's schedule of hardest
    images over the run (``_hardest_over``), whether or not ``model`` changes too. Every value
    is validated; a bad one raises ``ConfigError`` (an unknown model name
    ``models.UnknownModelError``; both are ValueErrors).

    >>> configure("fast").epochs, configure("fast", epochs=5).crop_epochs
    (10, 3)
    >>> configure("original", quick=True).train_subset
    2048
    """
    cfg = recipe if isinstance(recipe, TrainConfig) else get_recipe(recipe)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if quick:  # the smoke test's limits, unless asked for otherwise
        limits = dict(QUICK)
        limits["batch_size"] = min(cfg.batch_size, limits.pop("max_batch_size"))
        overrides = {**limits, **overrides}
    epochs = overrides.get("epochs", cfg.epochs)
    # an invalid epochs adjusts nothing: ``replace`` then refuses it, naming the value
    adjust = _is_int(epochs) and epochs >= 1 and epochs != cfg.epochs
    if overrides.get("model", cfg.model) != cfg.model:
        overrides.setdefault("model_kwargs", {})
        if "crop_epochs" not in overrides:
            overrides.update(_crops_over(cfg, 0))
    elif adjust and "crop_epochs" not in overrides:
        overrides.update(_crops_over(cfg, epochs))
    if (adjust and "hardest_fraction" not in overrides
            and "hardest_from_epoch" not in overrides):
        overrides.update(_hardest_over(cfg, epochs))
    return cfg.replace(**overrides)


def configure_with(recipe: str, sets, *, quick: bool = False, **options) -> TrainConfig:
    """``configure(recipe, quick=quick, **options)`` with ``sets``, the command line's ``--set``
    pairs (FIELD, VALUE), on top: applied as ``configure`` applies its overrides (a changed
    ``epochs`` keeps the share of crop epochs), except that FIELD=None really sets None
    (``configure`` reads None as "the recipe's own", which suits the options left unset but
    not an explicit --set)."""
    sets = dict(sets)
    nones = [name for name, value in sets.items() if value is None]
    cfg = configure(recipe, quick=quick,
                    **{**options, **{k: v for k, v in sets.items() if v is not None}})
    if nones:
        try:
            cfg = cfg.replace(**dict.fromkeys(nones))
        except (ConfigError, UnknownModelError) as e:  # ConfigError names the valid values
            raise ConfigError(f"--set {'/'.join(nones)}=None is not allowed: {e}") from None
    return cfg


def _crops_over(cfg: TrainConfig, epochs: int) -> dict:
    """``crop_epochs`` (and ``crop_size``) for ``epochs`` epochs with ``cfg``'s share of crop
    epochs, rounded down."""
    n = cfg.crop_epochs * epochs // cfg.epochs
    if not isinstance(cfg.crop_size, (tuple, list)):
        return dict(crop_epochs=n)
    # one size per crop epoch: the first n (none: the field's default, a single size)
    return dict(crop_epochs=n, crop_size=tuple(cfg.crop_size[:n]) or TrainConfig.crop_size)


def _hardest_over(cfg: TrainConfig, epochs: int) -> dict:
    """``hardest_fraction`` and ``hardest_from_epoch`` for ``epochs`` epochs that follow
    ``cfg``'s schedule of hardest images: epoch e trains on the fraction of ``cfg``'s epoch
    ⌊e·cfg.epochs/epochs⌋, the one at the same point of the run."""
    # the first epoch e with ⌊e·cfg.epochs/epochs⌋ ≥ from: ⌈from·epochs/cfg.epochs⌉, or none
    start = min(-(-cfg.hardest_from_epoch * epochs // cfg.epochs), epochs)
    if not isinstance(cfg.hardest_fraction, (tuple, list)):  # one fraction: only its start moves
        return dict(hardest_fraction=cfg.hardest_fraction, hardest_from_epoch=start)
    if start == epochs:  # too few epochs to reach it: every epoch trains on every image
        return dict(hardest_fraction=1.0, hardest_from_epoch=0)
    return dict(hardest_fraction=tuple(cfg.hardest_fraction_at(e * cfg.epochs // epochs)
                                       for e in range(start, epochs)), hardest_from_epoch=start)
