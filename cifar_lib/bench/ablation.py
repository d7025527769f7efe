"""Ablation: what each trick of the airbench94 recipe buys, measured at one fixed budget.

    python -m cifar_lib bench ablation [--seeds 0 1] [--epochs 4] [--widths 32 64 64]
        [--variants ...] [--quick] [--out FILE.json]

The ``airbench94`` recipe (``BASE``) is trained once per seed with every trick (the row "fast":
it was the fast recipe when the record was made), then once with each trick removed in turn
(the rest unchanged), and the ``original`` recipe beside them, all for the same number of
epochs on the same data, device and threads. A full-size airbench94 run takes about half an
hour on a 2-core CPU without native bf16, so the default budget is a narrower network
(``--widths 32 64 64``, about a sixteenth of the convolution FLOPs) for 4 epochs: each
variant then trains in about 3 minutes there, and the differences between variants are what
the table is for, not the absolute accuracy (the full recipe reaches 93–94%).

Removing test-time augmentation needs no second training: the row "no TTA" is the full
recipe's own run evaluated without it. ``seconds`` is the training time (``fit``'s
train_seconds; the final evaluation is not counted).

The record ships inside the package (``RECORD``), so the lesson ``01_train`` can show it on
Colab, where the repository's ``benchmarks/`` folder is not installed.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Sequence

from ..data import CifarSplit, add_data_args, load_cifar10
from ..recipes import configure, get_recipe
from ..train import fit
from . import records
from .records import print_table, settings, write_record

RECORD = Path(__file__).resolve().parent / "results" / "ablation.json"
BASE = "airbench94"  # the recipe whose tricks are removed one by one (fast_short's too)
# The budget is the fast_short recipe's, so its expected accuracy is this record's "fast" row.
_SHORT = get_recipe("fast_short")
EPOCHS, WIDTHS = _SHORT.epochs, _SHORT.model_kwargs["widths"]
SEEDS = (0, 1)
NO_TTA = "no TTA"
# Each variant: (what is removed, the TrainConfig overrides that remove it). ``whiten`` is a
# model argument, so that variant's overrides are merged into model_kwargs by ``variant_config``.
VARIANTS: dict[str, tuple[str, dict]] = {
    "fast": ("nothing: every trick", {}),
    "no whitening": ("the frozen whitening layer (a learnt 2×2 conv instead)",
                     {"model_kwargs": {"whiten": False}}),
    "constant lr": ("the warm-up/decay schedule (the peak lr throughout)",
                    {"schedule": "constant"}),
    "no label smoothing": ("label smoothing 0.2", {"label_smoothing": 0.0}),
    "no lookahead": ("lookahead weight averaging", {"lookahead": False}),
    "random flips": ("alternating flips (random ones instead)", {"flip": "random"}),
    "no translation": ("the ±2-pixel shifts", {"translate": 0}),
    NO_TTA: ("test-time augmentation (same training as 'fast')", {"tta_level": 0}),
    "original": ("the whole fast recipe: the seed notebook's recipe, same epochs", {}),
}
# The lesson's cheap re-run (01_train, rerun_ablation=True): minutes on a CPU, not hours.
CHEAP = dict(epochs=1, widths=(16, 32, 32))
# --quick: a smoke test of the whole benchmark (CI, the lesson's quick mode), not a measurement.
QUICK = dict(epochs=1, widths=(8, 16, 16), train_subset=1024, test_subset=500, batch_size=256)


def variant_config(name: str, *, epochs: int = EPOCHS, widths: Sequence[int] = WIDTHS,
                   seed: int = 0, **overrides):
    """The ``TrainConfig`` of ablation variant ``name`` at the given budget.

    ``overrides`` (e.g. train_subset, batch_size, device) apply to every variant alike.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown ablation variant {name!r}; valid: {', '.join(VARIANTS)}")
    if name == "original":
        return configure("original", epochs=epochs, seed=seed, eval_every=0, **overrides)
    changes = dict(VARIANTS[name][1])
    model_kwargs = {"widths": tuple(widths), **changes.pop("model_kwargs", {})}
    return configure(BASE, epochs=epochs, seed=seed, eval_every=0, model_kwargs=model_kwargs,
                     **changes, **overrides)


def run(train: CifarSplit, test: CifarSplit, *, variants: Sequence[str] = tuple(VARIANTS),
        seeds: Sequence[int] = SEEDS, epochs: int = EPOCHS, widths: Sequence[int] = WIDTHS,
        progress: bool = True, **overrides) -> list[dict]:
    """Train every variant once per seed; one row each: variant, removed, seed, test_acc (%,
    with the variant's TTA), seconds (training), epochs, parameters.

    "no TTA" reuses the "fast" run of the same seed (trained if "fast" is not asked for).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(VARIANTS)}")
    rows = []
    for seed in seeds:
        full = None
        for name in variants:
            if name == NO_TTA and full is not None:
                m = full
            else:
                cfg = variant_config("fast" if name == NO_TTA else name, epochs=epochs,
                                     widths=widths, seed=seed, **overrides)
                m = fit(cfg, train, test, progress=progress).metrics
                if name in ("fast", NO_TTA):
                    full = m
            acc = m["test_acc"] if name == NO_TTA else m.get("test_acc_tta", m["test_acc"])
            rows.append({"variant": name, "removed": VARIANTS[name][0], "seed": seed,
                         "test_acc": 100 * acc, "seconds": m["train_seconds"],
                         "epochs": m["epochs"], "parameters": m["parameters"]})
    return rows


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One row per variant (in the order first seen): mean and std of test_acc over seeds,
    lowest seed, mean seconds, and the difference to the full recipe's mean (``vs_fast``,
    percentage points; None without a "fast" row)."""
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    means = {v: statistics.mean(r["test_acc"] for r in rs) for v, rs in by_variant.items()}
    out = []
    for v, rs in by_variant.items():
        accs = [r["test_acc"] for r in rs]
        out.append({"variant": v, "removed": rs[0]["removed"], "seeds": len(rs),
                    "test_acc_mean": means[v],
                    "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "test_acc_min": min(accs),
                    "vs_fast": means[v] - means["fast"] if "fast" in means else None,
                    "seconds_mean": statistics.mean(r["seconds"] for r in rs)})
    return out


SUMMARY_COLUMNS = {
    "variant": "variant", "removed": "removed",
    "test accuracy %": lambda r: f"{r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f}",
    "vs fast (points)": lambda r: "" if r["vs_fast"] is None else f"{r['vs_fast']:+.2f}",
    "train seconds": lambda r: f"{r['seconds_mean']:.0f}",
}


def read_record(path: str | Path = RECORD) -> dict:
    """The committed ablation record (``RECORD`` by default), with its ``summary`` rows."""
    return records.read_record(path, "ablation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                   help=f"one training per variant and seed (default {' '.join(map(str, SEEDS))})")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"the budget (default {EPOCHS})")
    p.add_argument("--widths", type=int, nargs=3, default=list(WIDTHS),
                   help=f"the fast net's widths (default {' '.join(map(str, WIDTHS))}; the full "
                        f"recipe uses 64 256 256)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   metavar="VARIANT", help="which variants (default all: "
                                           + ", ".join(repr(v) for v in VARIANTS) + ")")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 epoch of 1,024 images at widths 8 16 16")
    p.add_argument("--out", default=str(RECORD), help=f"JSON record (default {RECORD})")


def main(args: argparse.Namespace) -> int:
    train, test = load_cifar10(args.data_root, download=args.download)
    budget = dict(epochs=args.epochs, widths=tuple(args.widths))
    extra = {}
    if args.quick:
        quick = dict(QUICK)
        budget = dict(epochs=quick.pop("epochs"), widths=quick.pop("widths"))
        extra = quick
    rows = run(train, test, variants=args.variants, seeds=args.seeds, device=args.device,
               progress=not args.quick, **budget, **extra)
    summary = summarize(rows)
    print_table(summary, SUMMARY_COLUMNS)
    write_record(args.out, rows, benchmark="ablation", command=args.command_line,
                 settings=settings(args), budget={**budget, **extra}, quick=args.quick,
                 summary=summary)
    print(f"record written to {args.out}")
    return 0
