"""Ablation: what each trick of a recipe buys (``cifar_lib.ablation``), as a benchmark.

    python -m cifar_lib bench ablation [--recipe fast] [--set FIELD=VALUE ...] [--seeds 0 1 2]
        [--epochs N] [--widths A B C] [--variants ...] [--quick] [--out FILE.json] [--resume]

Every variant trains at the recipe's full budget by default: hours on a CPU. The record goes
to ``cifar_lib/records/ablation_<recipe>.json``, where lesson 01_train reads it. After each run
the rows so far go to ``<record>.progress.json``; ``--resume`` continues from there if they were
measured with the same recipe, budget, variants, seeds and machine (``records.Progress``).
``--set`` ablates the recipe with those fields changed (a candidate before it ships); the
record keeps the recipe's settings as trained under ``recipe_settings``.
"""
from __future__ import annotations

import argparse

from ..ablation import (
    QUICK,
    SEEDS,
    SUMMARY_COLUMNS,
    VARIANTS,
    record_path,
    run,
    summarize,
)
from ..config import add_override_args
from ..data import add_data_args, load_cifar10
from ..files import json_safe
from ..recipes import configure_with
from .records import Progress, machine_fingerprint, print_table, settings, write_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="fast", choices=list(VARIANTS),
                   help="the recipe whose tricks are removed one at a time (default fast)")
    add_override_args(p, "changes the ablated recipe itself, before its tricks are removed")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                   help=f"one training per variant and seed (default {' '.join(map(str, SEEDS))})")
    p.add_argument("--epochs", type=int, help="a shorter budget (default: the recipe's own)")
    p.add_argument("--widths", type=int, nargs=3,
                   help="narrower widths (default: the recipe's own, 64 256 256)")
    p.add_argument("--variants", nargs="+", metavar="VARIANT",
                   help="which variants (default every one that changes the recipe)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 epoch of 1,024 images at widths 8 16 16")
    p.add_argument("--out", help="JSON record (default cifar_lib/records/ablation_RECIPE.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from <record>.progress.json")
    p.add_argument("--note", help="how the runs were made, kept in the record and shown with "
                                  "it (e.g. two at a time, one per core)")


def main(args: argparse.Namespace) -> int:
    train, test = load_cifar10(args.data_root, download=args.download)
    budget = dict(epochs=args.epochs, widths=tuple(args.widths) if args.widths else None)
    extra = dict(QUICK) if args.quick else {}
    if args.quick:
        budget = dict(epochs=extra.pop("epochs"), widths=extra.pop("widths"))
    out = args.out or record_path(args.recipe)
    sets = list(args.overrides)
    # the full budget's settings, with --set: what the variants remove tricks from
    recipe_settings = json_safe({args.recipe: configure_with(args.recipe, sets).to_dict()})
    progress = Progress(out, {"recipe": args.recipe, "recipe_settings": recipe_settings,
                              "budget": {**budget, **extra}, "device": args.device,
                              "variants": args.variants, "seeds": args.seeds,
                              "machine": machine_fingerprint()}, args.resume)
    rows = run(train, test, recipe=args.recipe, variants=args.variants, seeds=args.seeds,
               sets=sets, device=args.device, progress=not args.quick, done=progress.done,
               on_row=progress.save, **budget, **extra)
    summary = summarize(rows)
    print_table(summary, SUMMARY_COLUMNS)
    write_record(out, rows, benchmark="ablation", command=args.command_line,
                 settings=settings(args), recipe=args.recipe, recipe_settings=recipe_settings,
                 budget={**budget, **extra}, quick=args.quick, summary=summary,
                 **({"note": args.note} if args.note else {}))
    progress.finish()
    print(f"record written to {out}")
    return 0
