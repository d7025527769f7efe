"""Named training recipes, and ``configure``: the one way to turn a recipe and overrides into a
``TrainConfig`` (used by the command line, the notebooks, the benchmarks and the tests).

- ``original``: the seed notebook's recipe, exactly (``seed`` is accepted as an alias).
- ``fast``: the default, the fastest recipe measured to reach 94%: ``fast_micro`` (below).
- ``airbench94``: the anchor, Keller Jordan's airbench94 with its published hyperparameters,
  about 94% in ten epochs (``fast`` until 2026-11-26; benchmarks race it by name).
- ``fast_muon``: airbench94_muon: Muon for the conv filters, batch 2000, 8 epochs, no lookahead.
- ``fast_muon_crop``: ``fast_muon`` for 10 epochs, the first 6 on random 24×24 crops, random
  brightness and contrast, and TTA for the least confident 30% of test images only: 0.71× the
  anchor's time per run, 94.15% over five seeds, on a 2-core Intel Xeon without native bf16;
  0.875×, 94.14%, on an AMD EPYC with native bf16 (benchmarks/README.md).
- ``fast_micro``: ``fast_muon_crop`` computed in micro-batches of 1,000 (the same optimiser
  steps; BatchNorm statistics per 1,000): 94.13% over five seeds in 0.725× the anchor's time on
  a 2-core AMD EPYC with native bf16, and 0.70× (94.03% over five seeds) on the same kind of
  CPU with bf16 turned off (``bench train --precision fp32``). ``fast`` since 2026-11-26.
- ``fast_short``: a shorter budget for slow machines: airbench94 at widths 32/64/64 for
  4 epochs (the ablation's budget), about 85%.
- ``fast_small``: airbench94 sized for the original's 64%: widths 16/32/32, one epoch.
- ``muon_small``: ``fast_muon`` sized for 64% in as little time as possible (the time-to-64%
  race): widths 16/32/64, one pass over 20,000 of the 50,000 training images.
"""
from __future__ import annotations

from .batches import CIFAR10_MEAN_STD
from .config import ConfigError, TrainConfig

# airbench94 states lr=11.5 and weight_decay=0.0153 per 1024 images for a summed loss, scaled
# by 1024·(1 + 1/(1 − momentum)); for PyTorch's mean loss at batch 1024 that is lr ≈ 1.5 and a
# decay of 0.0020 per step, i.e. weight_decay = 0.0020 / 1.5.
_KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))
_AIRBENCH_LR = 11.5 / _KILOSTEP * 1024
_AIRBENCH_WD = 0.0153 * 1024 / _KILOSTEP / _AIRBENCH_LR

RECIPES: dict[str, TrainConfig] = {
    # The seed notebook, exactly: SimpleCNN, Adam 1e-3, batch 128, 2 epochs, mean/std 0.5.
    "original": TrainConfig(),
    "airbench94": TrainConfig(
        model="airbench", model_kwargs={"widths": (64, 256, 256)},
        epochs=10,               # airbench94 trains 9.9 epochs; whole epochs keep resume simple
        batch_size=1024, optimizer="sgd", lr=_AIRBENCH_LR, momentum=0.85,
        weight_decay=_AIRBENCH_WD,
        bias_lr_scale=64.0,      # BatchNorm/whitening biases need a far larger step to matter
        schedule="triangle",     # short warm-up, then linear decay: most progress in few steps
        label_smoothing=0.2,     # soft targets: better calibrated, less over-confident logits
        lookahead=True,          # weight averaging: a free ~0.2–0.3 points at the end
        whiten_bias_epochs=3,    # the whitening bias helps early, then only adds noise
        flip="alternating",      # each image both ways every two epochs, no repeats by chance
        translate=2,             # random ±2-pixel shifts: the main regulariser
        mean=CIFAR10_MEAN_STD[0], std=CIFAR10_MEAN_STD[1],
        tta_level=2,             # mirror + 1-pixel shifts at test time: ~+0.5 points
        precision="auto",        # bf16 on Ampere+ GPUs and native-bf16 CPUs, fp16 on older GPUs
        channels_last="auto",    # the memory layout fast convolution kernels want (not on MPS)
    ),
}

# airbench94_muon states its SGD lrs for a summed loss at batch 2000 (biases 0.053, head 0.67)
# and a decay of 2e-6·2000 per step. For PyTorch's mean loss multiply the lrs by 2000; its head
# output is divided by 256 where ours is by 9, and an SGD lr acts on the product scale²·lr, so
# the head's lr here is 0.67·2000·(9/256)². Muon's steps do not depend on the loss's scale.
_MUON_BATCH = 2000
_MUON_HEAD_LR = 0.67 * _MUON_BATCH * (9 / 256) ** 2
RECIPES["fast_muon"] = RECIPES["airbench94"].replace(
    optimizer="muon", muon_lr=0.24, muon_momentum=0.6,  # conv filters: Muon
    lr=_MUON_HEAD_LR, momentum=0.85,                      # head and biases: Nesterov SGD
    bias_lr_scale=0.053 * _MUON_BATCH / _MUON_HEAD_LR,
    weight_decay=2e-6 * _MUON_BATCH / _MUON_HEAD_LR,
    batch_size=_MUON_BATCH, epochs=8,
    lr_start=1.0, lr_peak_at=0.0, lr_end=0.0,             # no warm-up: linear decay to 0
    lookahead=False)

# More epochs for fewer FLOPs each (benchmarks/README.md): 10 epochs instead of 8, the first 6
# on random 24×24 windows (a crop epoch costs about half a whole-image one, while the net learns
# coarse features), the last 4 on whole images, so the net ends at the test images' size; the
# test-time views only for the 30% least confident test images (1 + 5·0.3 forward passes per
# image instead of 6; the confident ones almost never change their answer); and random
# brightness (±0.14) and contrast (1 ± 0.13) per training image, the values of the Hive's
# speedrun record (github.com/hiverge/cifar10-speedrun): nearly free, and worth about 0.15 points
# here (94.15% against 93.99% without, the same five seeds). Measured side by side on a 2-core
# Intel Xeon without native bf16: 0.71× the anchor's time (0.76× in a second, one-seed pair);
# on an AMD EPYC with native bf16 0.875× (there bf16 makes the convolutions cheap, not the rest).
RECIPES["fast_muon_crop"] = RECIPES["fast_muon"].replace(epochs=10, crop_epochs=6, crop_size=24,
                                                         tta_fraction=0.3, brightness=0.1399,
                                                         contrast=0.1308)
# The same updates in two halves of 1,000 images (gradients summed, one step per 2,000): on a
# 2-core AMD EPYC with native bf16 a whole-image step of 2,000 cost about 1.5× per image what
# one of 1,000 did (its activations far outgrow the caches); BatchNorm sees 1,000 at a time.
# With bf16 turned off there the halves paid too (0.70× the anchor's time). GPUs: unmeasured.
RECIPES["fast_micro"] = RECIPES["fast_muon_crop"].replace(micro_batch=1000)
# The default is the fastest recipe that reaches 94%; its own name stays, for the records.
RECIPES["fast"] = RECIPES["fast_micro"]
# A shorter budget, for a learner on a slow CPU: airbench94 with about a sixteenth of the
# convolution FLOPs per image for 4 epochs instead of 10. The ablation (bench/ablation.py)
# measures at this budget.
RECIPES["fast_short"] = RECIPES["airbench94"].replace(model_kwargs={"widths": (32, 64, 64)},
                                                      epochs=4)
# airbench94 sized for the seed's 64% instead of 94%: an eighth of the widths, one epoch.
RECIPES["fast_small"] = RECIPES["airbench94"].replace(model_kwargs={"widths": (16, 32, 32)},
                                                      epochs=1, batch_size=256, tta_level=0)
RECIPES["muon_small"] = RECIPES["fast_muon"].replace(
    model_kwargs={"widths": (16, 32, 64)}, epochs=1, batch_size=250, tta_level=0,
    whiten_bias_epochs=1, train_subset=20_000)
ALIASES = {"seed": "original"}  # the name the original recipe had before the random seed took it

# What a recipe reached when measured on the full data set: (mean test accuracy in %, with the
# recipe's own TTA; how many seeds; the record it comes from). The lesson 01_train quotes them
# beside its time estimates; they live here because the installed package (Colab) has no
# benchmarks/ folder, and tests/test_recipes.py checks each against its record.
EXPECTED_ACCURACY: dict[str, tuple[float, int, str]] = {
    "airbench94": (94.00, 3, "benchmarks/results/archive/train_fast.json"),
    "fast": (94.13, 5, "benchmarks/results/train_cpu-bf16.json"),
    "fast_micro": (94.13, 5, "benchmarks/results/train_cpu-bf16.json"),
    "fast_muon": (93.91, 1, "benchmarks/results/archive/train_cpu-fp32_fast_muon.json"),
    "fast_muon_crop": (94.15, 5, "benchmarks/results/archive/train_cpu-fp32_fast_muon_crop.json"),
    "fast_short": (85.44, 2, "cifar_lib/bench/results/ablation.json"),
    "fast_small": (65.75, 1, "benchmarks/results/archive/train_fast.json"),
    "original": (66.30, 1, "benchmarks/results/archive/train_fast.json"),
}

# A smoke test of any recipe (CI, first tries): one epoch on 2,048 training and 1,000 test
# images, at most 256 per batch so that even one epoch takes several steps.
QUICK = dict(epochs=1, train_subset=2048, test_subset=1000, max_batch_size=256)


def recipe_names() -> list[str]:
    """Every accepted recipe name, aliases included, sorted."""
    return sorted([*RECIPES, *ALIASES])


def get_recipe(name: str) -> TrainConfig:
    """The ``TrainConfig`` of recipe ``name`` (or its alias)."""
    name = ALIASES.get(name, name)
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; valid names: "
                          f"{', '.join(sorted(RECIPES))} (alias: "
                          f"{', '.join(f'{a} = {n}' for a, n in ALIASES.items())})")
    return RECIPES[name]


def configure(recipe: str = "fast", *, quick: bool = False, **overrides) -> TrainConfig:
    """Recipe ``recipe``, shrunk to a smoke test when ``quick``, with ``overrides`` applied.

    Overrides are ``TrainConfig`` fields; a value of None means "the recipe's own" (so a
    notebook or the command line can pass every knob through unchanged). Changing ``model``
    without ``model_kwargs`` resets them to the new model's defaults (the recipe's belong to
    its own model), and its crop epochs to none (crops need the airbench model). Changing
    the number of epochs (or ``quick``) without ``crop_epochs`` keeps the recipe's share of
    crop epochs, rounded down, so that a shorter run still ends on whole images. Every value is
    validated; a bad one raises ``ConfigError``.
    """
    cfg = get_recipe(recipe)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if quick:  # the smoke test's limits, unless asked for otherwise
        limits = dict(QUICK)
        limits["batch_size"] = min(cfg.batch_size, limits.pop("max_batch_size"))
        overrides = {**limits, **overrides}
    if overrides.get("model", cfg.model) != cfg.model:
        overrides.setdefault("model_kwargs", {})
        if "crop_epochs" not in overrides:
            overrides.update(_crops_over(cfg, 0))
    elif overrides.get("epochs", cfg.epochs) != cfg.epochs and "crop_epochs" not in overrides:
        overrides.update(_crops_over(cfg, overrides["epochs"]))
    return cfg.replace(**overrides)


def _crops_over(cfg: TrainConfig, epochs: int) -> dict:
    """``crop_epochs`` (and ``crop_size``) for ``epochs`` epochs with ``cfg``'s share of crop
    epochs, rounded down."""
    n = cfg.crop_epochs * epochs // cfg.epochs
    if not isinstance(cfg.crop_size, (tuple, list)):
        return dict(crop_epochs=n)
    # one size per crop epoch: the first n (none: the field's default, a single size)
    return dict(crop_epochs=n, crop_size=tuple(cfg.crop_size[:n]) or TrainConfig.crop_size)
