"""What each trick of a recipe buys: the recipe trained with every trick, then with one trick
removed at a time (the rest unchanged), on the same data, device and threads, over seeds.

    python -m cifar_lib bench ablation [--recipe fast] [--seeds 0 1 2] [--quick]

``VARIANTS[recipe]`` names, for ``fast`` and ``airbench94``, each trick and the ``TrainConfig``
changes that remove it; ``variants_of`` leaves out those that change nothing in the recipe as
configured (a trick it does not use). Removing test-time augmentation needs no second training:
the row "no TTA" is the full recipe's own run evaluated without it. ``seconds`` is the training
time (``fit``'s train_seconds; the final evaluation is not counted). By default every run has
the recipe's full budget; ``epochs``/``widths`` shrink it for a quicker, rougher look.

The records ship inside the package (``cifar_lib/records/ablation_<recipe>.json``), so the
lesson 01_train can show them on Colab.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Callable, Sequence

from . import records
from .data import CifarSplit
from .recipes import configure, configure_with

NO_TTA = "no TTA"
MEASURED = ("test_acc", "test_acc_no_tta", "seconds", "epochs", "parameters")  # in each row
SEEDS = (0, 1, 2)
# Each variant: (what is removed, the TrainConfig overrides that remove it). ``whiten`` is a
# model argument, merged into model_kwargs by ``variant_config``.
VARIANTS: dict[str, dict[str, tuple[str, dict]]] = {
    "fast": {
        "fast": ("nothing: every trick", {}),
        "no Muon": ("Muon for the conv filters (Nesterov SGD for every weight instead)",
                    {"optimizer": "sgd"}),
        "no early crops": ("the first 6 epochs on 24×24 crops (whole images throughout)",
                           {"crop_epochs": 0}),
        "cut-out crops": ("resizing the crops' windows (crop-size pixels cut out instead)",
                          {"crop_window": None}),
        "every image": ("training on the hardest images (every image in every epoch)",
                        {"hardest_fraction": 1.0, "hardest_from_epoch": 0}),
        "no colour jitter": ("random brightness and contrast",
                             {"brightness": 0.0, "contrast": 0.0}),
        "no whitening": ("the frozen whitening layer (a learnt 2×2 conv instead)",
                         {"model_kwargs": {"whiten": False}}),
        "no label smoothing": ("label smoothing 0.2", {"label_smoothing": 0.0}),
        "random flips": ("alternating flips (random ones instead)", {"flip": "random"}),
        "no translation": ("the ±2-pixel shifts", {"translate": 0}),
        "whitening bias trained": ("freezing the whitening bias after 3 epochs",
                                   {"whiten_bias_epochs": 10}),
        "whole batches": ("micro-batches (each step computed at once)",
                          {"micro_batch": None}),
        NO_TTA: ("test-time augmentation (same training as 'fast')", {"tta_level": 0}),
        # Not a trick but its price: the validation split that calibration needs.
        "no validation split": ("holding out 5,000 validation images (all 50,000 train)",
                                {"val_fraction": 0.0}),
    },
    "airbench94": {
        "airbench94": ("nothing: every trick", {}),
        "no whitening": ("the frozen whitening layer (a learnt 2×2 conv instead)",
                         {"model_kwargs": {"whiten": False}}),
        "constant lr": ("the warm-up/decay schedule (the peak lr throughout)",
                        {"schedule": "constant"}),
        "no label smoothing": ("label smoothing 0.2", {"label_smoothing": 0.0}),
        "no lookahead": ("lookahead weight averaging", {"lookahead": False}),
        "random flips": ("alternating flips (random ones instead)", {"flip": "random"}),
        "no translation": ("the ±2-pixel shifts", {"translate": 0}),
        NO_TTA: ("test-time augmentation (same training as 'airbench94')", {"tta_level": 0}),
        "original": ("the whole recipe: the original notebook's recipe, same epochs", {}),
    },
}
# --quick: a smoke test of the whole benchmark (CI, the lesson's quick mode), not a measurement.
QUICK = dict(epochs=1, widths=(8, 16, 16), train_subset=1024, test_subset=500, batch_size=256)


def record_path(recipe: str) -> Path:
    """Where the shipped ablation record of ``recipe`` lives."""
    return records.shipped(f"ablation_{recipe}")


def _variants(recipe: str) -> dict[str, tuple[str, dict]]:
    if recipe not in VARIANTS:
        raise ValueError(f"no ablation for recipe {recipe!r}; valid: {', '.join(VARIANTS)}")
    return VARIANTS[recipe]


def variant_config(recipe: str, name: str, *, seed: int = 0, epochs: int | None = None,
                   widths: Sequence[int] | None = None, sets: Sequence[tuple] = (), **overrides):
    """The ``TrainConfig`` of ablation variant ``name`` of ``recipe``: the recipe's budget
    unless ``epochs``/``widths`` say otherwise. ``sets``: (field, value) pairs that change the
    recipe itself, as the command line's ``--set``; ``overrides`` (e.g. train_subset,
    batch_size, device) apply to every variant alike."""
    variants = _variants(recipe)
    if name not in variants:
        raise ValueError(f"unknown ablation variant {name!r}; valid: {', '.join(variants)}")
    base = configure_with(recipe, sets)
    epochs = epochs or base.epochs
    if name == "original":
        return configure("original", epochs=epochs, seed=seed, eval_every=0, **overrides)
    changes = dict(variants[name][1])
    model_kwargs = {**base.model_kwargs, **({"widths": tuple(widths)} if widths else {}),
                    **changes.pop("model_kwargs", {})}
    if "whiten_bias_epochs" in changes:  # "trained throughout" means every epoch of the run
        changes["whiten_bias_epochs"] = epochs
    # the budget after the sets, so that fewer epochs keep the changed recipe's schedule;
    # replace(), not configure(): configure reads None as "the recipe's own", and removing
    # micro-batches means micro_batch=None
    return configure(base, epochs=epochs, seed=seed, eval_every=0, model_kwargs=model_kwargs,
                     **overrides).replace(**changes)


def variants_of(recipe: str, sets: Sequence[tuple] = ()) -> list[str]:
    """The names of ``recipe``'s variants (with ``sets``, as ``variant_config``) that change
    it: removing a trick the recipe does not use would train the full recipe again."""
    full = variant_config(recipe, recipe, sets=sets)
    return [name for name in _variants(recipe)
            if name == recipe or variant_config(recipe, name, sets=sets) != full]


def run(train: CifarSplit, test: CifarSplit, *, recipe: str = "fast",
        variants: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS,
        epochs: int | None = None, widths: Sequence[int] | None = None,
        sets: Sequence[tuple] = (), progress: bool = True, done: Sequence[dict] = (),
        on_row: Callable[[list[dict]], None] | None = None, **overrides) -> list[dict]:
    """Train every variant once per seed; one row each: variant, removed, seed, test_acc (%,
    with the variant's TTA), test_acc_no_tta (%), seconds (training), epochs, parameters.

    Seed by seed, so that an interrupted run already holds whole tables. "no TTA" is the full
    recipe's run of the same seed without TTA (trained if not asked for). ``variants``: by
    default those that change the recipe (``variants_of``); ``sets``: changes to the recipe
    itself, as ``variant_config``'s. ``done``: rows measured before (an interrupted run's),
    kept rather than trained again; ``on_row`` gets all rows so far after each new one (to
    save progress).
    """
    from .train import fit  # the training loop, only when something is trained
    table = _variants(recipe)
    variants = variants_of(recipe, sets) if variants is None else list(variants)
    unknown = [v for v in variants if v not in table]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(table)}")
    measured = {(r["variant"], r["seed"]): r for r in done}
    rows = []
    for seed in seeds:
        for name in variants:
            if (name, seed) in measured:
                rows.append(measured[name, seed])
                continue
            full = measured.get((recipe, seed)) if name == NO_TTA else None
            if full is None:
                cfg = variant_config(recipe, recipe if name == NO_TTA else name, seed=seed,
                                     epochs=epochs, widths=widths, sets=sets, **overrides)
                m = fit(cfg, train, test, progress=progress).metrics
                full = {"test_acc": 100 * m.get("test_acc_tta", m["test_acc"]),
                        "test_acc_no_tta": 100 * m["test_acc"], "seconds": m["train_seconds"],
                        "epochs": m["epochs"], "parameters": m["parameters"]}
            row = {"variant": name, "removed": table[name][0], "seed": seed,
                   **{k: full[k] for k in MEASURED}}
            if name == NO_TTA:
                row["test_acc"] = row["test_acc_no_tta"]
            else:
                measured[name, seed] = row
            rows.append(row)
            if on_row is not None:
                on_row(rows)
    return rows


def summarize(rows: Sequence[dict], base: str | None = None) -> list[dict]:
    """One row per variant (in the order first seen): mean and std of test_acc over seeds,
    lowest seed, the median of the seconds (a timing: one run slowed by the machine does not
    move it), and the difference to the full recipe's mean (``vs_base``, percentage points;
    None without a row for ``base``, by default the first variant)."""
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    base = base or next(iter(by_variant), None)
    means = {v: statistics.mean(r["test_acc"] for r in rs) for v, rs in by_variant.items()}
    out = []
    for v, rs in by_variant.items():
        accs = [r["test_acc"] for r in rs]
        out.append({"variant": v, "removed": rs[0]["removed"], "seeds": len(rs),
                    "test_acc_mean": means[v],
                    "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "test_acc_min": min(accs),
                    "vs_base": means[v] - means[base] if base in means else None,
                    "seconds_median": statistics.median(r["seconds"] for r in rs)})
    return out


def difference_error(row: dict, base: dict) -> float:
    """The error bar of a summary ``row``'s difference to ``base``: ±sqrt(std² + std_base²), the
    spread over seeds of the difference between one run of each. A difference inside it is noise."""
    return math.hypot(row["test_acc_std"], base["test_acc_std"])


SUMMARY_COLUMNS = {
    "variant": "variant", "removed": "removed",
    "test accuracy %": lambda r: f"{r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f}",
    "difference (points)": lambda r: "" if r["vs_base"] is None else f"{r['vs_base']:+.2f}",
    "train seconds (median)": lambda r: f"{r['seconds_median']:.0f}",
}


def read_record(recipe: str = "fast") -> dict:
    """The shipped ablation record of ``recipe``, with its ``summary`` rows."""
    return records.read_record(record_path(recipe), "ablation")


def seconds_compare(record: dict) -> bool:
    """Whether an ablation record's seconds compare between its variants: not where the
    machine's speed changed while it ran (``"seconds_comparable": false``, its note says how)."""
    return record.get("seconds_comparable", True)
