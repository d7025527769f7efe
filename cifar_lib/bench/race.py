"""Training: a recipe against the airbench94 anchor, over seeds, side by side.

    python -m cifar_lib bench train [--recipe fast] [--set FIELD=VALUE ...] [--seeds 0 1 2 3 4]
                                    [--anchor-seeds 0 1 2 3 4] [--device auto] [--precision P]
                                    [--quick] [--resume]

``--recipe`` (default ``fast``) once per seed and the anchor (``airbench94``, airbench94's
published hyperparameters) once per anchor seed, the anchor's runs spread evenly among the
recipe's (``run_order``) so that a slow spell on a shared machine falls on both; full data, test
accuracy with TTA on all 10,000 test images; ``seconds`` is timed as airbench times itself
(``CLOCK``): the wall time from loaded data to that final accuracy, with no evaluation between
epochs (the accuracy without TTA, also reported, comes from the same pass), after an untimed
warm-up of each recipe (``warm_up``). ``time_ratio`` is the recipe's mean seconds over the
anchor's, on the same device, threads and precision rules.
(The race to the original notebook's 64% is its own benchmark, ``time_to_64``.) ``--set``
changes fields of the raced recipe only, to race a variant before it becomes a recipe; the
record keeps both recipes' settings in full.

Prints a markdown table and writes a JSON record, by default one per kind of machine
(``benchmarks/results/train_<kind>.json``, kind: cuda, mps, cpu-bf16 or cpu-fp32), because CPU
times depend above all on whether the CPU has native bf16. ``--precision fp32`` races both
recipes without autocast on a CPU that has it (record ``train_<kind>_fp32.json``): the same
arithmetic as a CPU without native bf16, on this CPU's caches and vector units.

Ten full runs take hours on a CPU, so none is lost: after each run the rows so far go to
``<record>.progress.json``, and ``--resume`` continues from it, if it was measured with the same
recipes (names and settings), device, CPU, flags, threads and torch, so that a resumed record
still compares like with like. Each row says when it started.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import add_override_args
from ..data import CifarSplit, add_data_args, load_cifar10
from ..device import cpu_has_native_bf16, select_device
from ..errors import UsageError
from ..files import json_safe
from ..recipes import configure, configure_with
from ..speed.clock import synced_clock
from ..train import fit
from .records import Progress, machine_fingerprint, now, print_table, settings, write_record

# CIFAR-10's benchmark protocol, as airbench races: train on all 50,000 training images, test on
# the 10,000 test images. (A run for use holds out a validation split for calibration; a race
# chooses nothing, so it holds out nothing.)
PROTOCOL = {"val_fraction": 0.0}
# What ``seconds`` covers, written into every record (``train_once`` keeps to it).
CLOCK = ("wall time from loaded data through training (the whitening set-up included) and the "
         "final evaluation with TTA, as airbench94 times itself; no evaluation between epochs; "
         "the accuracy without TTA (test_acc_no_tta) comes from the same pass, TTA's first view; "
         "after an untimed warm-up run of each recipe on a few batches, as airbench's races "
         "warm up")
GOAL = 94.0                       # % test accuracy (mean over seeds) the recipes race to
RECIPE, ANCHOR = "fast", "airbench94"
SEEDS = [0, 1, 2, 3, 4]
# --quick: a smoke test of the whole benchmark, not a measurement (one epoch of small subsets).
QUICK_TRAIN, QUICK_TEST = 512, 256
WARM_UP_TEST = 1000  # test images in the warm-up (``warm_up``): one evaluation batch


def quick_subsets(quick: bool) -> dict:
    """The ``configure`` overrides that shrink the data for --quick (none otherwise)."""
    return dict(train_subset=QUICK_TRAIN, test_subset=QUICK_TEST) if quick else {}


def machine_kind(device: torch.device) -> str:
    """'cuda', 'mps', 'cpu-bf16' (native bf16: AVX512-BF16 or AMX) or 'cpu-fp32'."""
    if device.type != "cpu":
        return device.type
    return "cpu-bf16" if cpu_has_native_bf16() else "cpu-fp32"


def default_out(device: torch.device, precision: str | None = None, name: str = "train") -> str:
    """``<name>_<kind>.json``; ``<name>_<kind>_<precision>.json`` when the precision is forced."""
    forced = f"_{precision}" if precision else ""
    return f"benchmarks/results/{name}_{machine_kind(device)}{forced}.json"


def warm_up(recipes: Sequence[tuple[str, dict | None]], train: CifarSplit, test: CifarSplit,
            device: torch.device, precision: str | None = None) -> None:
    """Train each (recipe, overrides) once on a few batches of images, for its full epochs,
    untimed and unrecorded. A process's first steps pay for growing its memory and for
    preparing the kernels of each shape; without a warm-up that cost falls on whichever run comes
    first (airbench's own races warm up the same way, on dummy data)."""
    for name, changes in recipes:
        cfg = configure_with(name, (changes or {}).items())
        # enough images for a whole batch of the hardest
        n = cfg.batch_size * max(2, math.ceil(1 / cfg.fewest_hardest_fraction()) + 1)
        train_once(name, 0, train, test, device, False, precision,
                   {**(changes or {}), "train_subset": n, "test_subset": WARM_UP_TEST})


def train_once(recipe: str, seed: int, train: CifarSplit, test: CifarSplit,
               device: torch.device, quick: bool, precision: str | None = None,
               overrides: dict | None = None) -> dict:
    """One full run of ``recipe`` (with ``overrides`` of its fields): its row (test_acc with the
    recipe's TTA, in %, and its seconds as ``CLOCK`` says). ``precision``: None for
    the recipe's own."""
    # eval_every=0: evaluate once, at the end (with the recipe's TTA).
    cfg = configure_with(recipe, overrides or {}, quick=quick, seed=seed, eval_every=0,
                         device=str(device), precision=precision, **PROTOCOL,
                         **quick_subsets(quick))
    started = now()
    t0 = synced_clock(device)
    m = fit(cfg, train, test, progress=not quick).metrics
    seconds = synced_clock(device) - t0  # see CLOCK
    return {"recipe": recipe, "seed": seed, "test_acc": 100 * m.get("test_acc_tta", m["test_acc"]),
            "test_acc_no_tta": 100 * m["test_acc"], "seconds": seconds,
            "images_per_second": m["images_per_second"], "epochs": cfg.epochs,
            "precision": m["precision"], "started": started}


def summarize(rows: list[dict], goal: float = GOAL) -> dict:
    """Per-seed lists and their summary: mean, std and lowest accuracy, mean seconds, and the
    time to ``goal``% (the mean seconds when the mean accuracy reaches it, else None)."""
    accs, secs = [r["test_acc"] for r in rows], [r["seconds"] for r in rows]
    mean = statistics.mean(accs) if accs else None
    seconds = statistics.mean(secs) if secs else None
    return {"recipe": rows[0]["recipe"] if rows else None, "seeds": [r["seed"] for r in rows],
            "test_acc": accs, "seconds": secs, "test_acc_mean": mean,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_acc_min": min(accs) if accs else None, "seconds_mean": seconds,
            "time_to_goal": seconds if mean is not None and mean >= goal else None}


def fingerprint(recipe: str, anchor: str, device: torch.device, quick: bool,
                precision: str | None = None, overrides: dict | None = None) -> dict:
    """What rows must share to be compared: both recipes' settings (with ``precision`` when
    forced and ``overrides`` of the raced recipe), the device, and the machine
    (``records.machine_fingerprint``)."""
    machine = machine_fingerprint()
    configs = {anchor: configure(anchor, quick=quick, precision=precision, **PROTOCOL),
               recipe: configure_with(recipe, overrides or {}, quick=quick, precision=precision,
                                      **PROTOCOL)}
    recipes = {name: cfg.to_dict() for name, cfg in configs.items()}
    # as JSON holds it (tuples become lists), so that a saved fingerprint compares equal
    return json_safe({"recipes": recipes, "device": str(device), "quick": quick,
                      "machine": machine})


def run_order(n_recipe: int, n_anchor: int) -> list[tuple[str, int]]:
    """The order of the runs: ("recipe", i) and ("anchor", j) pairs, the anchor's runs spread
    evenly among the recipe's (anchor run j after ceil((j + 1)·n_recipe / (n_anchor + 1)) recipe
    runs), so a machine that slows down or speeds up during the benchmark weighs on both alike:
    5 and 1 give r0 r1 r2 a0 r3 r4; 5 and 2: r0 r1 a0 r2 r3 a1 r4; n and n: in turns."""
    after = [math.ceil((j + 1) * n_recipe / (n_anchor + 1)) for j in range(n_anchor)]
    order = []
    for i in range(n_recipe + 1):
        order += [("anchor", j) for j in range(n_anchor) if after[j] == i]
        if i < n_recipe:
            order.append(("recipe", i))
    return order


def run(seeds=SEEDS, anchor_seeds=SEEDS, root=None, quick: bool = False, device: str = "auto",
        download: bool = False, recipe: str = RECIPE, anchor: str = ANCHOR,
        done: Sequence[dict] = (), on_run: Callable[[list[dict]], None] | None = None,
        precision: str | None = None, overrides: dict | None = None) -> dict:
    """The race on one ``device`` ('auto': the best present); returns the record's fields, with
    every run's row under 'runs'. ``quick``: 512 training and 256 test images, one epoch each.
    ``done``: rows already measured (``Progress.done``), reused rather than run again;
    ``on_run`` receives all rows so far after each new run. ``precision``: forced on both
    recipes (None: each recipe's own); ``overrides``: fields of ``recipe`` (not the anchor)."""
    dev = select_device(device)
    train, test = load_cifar10(root, download=download)
    measured = {(r["recipe"], r["seed"]): r for r in done}
    runs, our_rows, their_rows = [], [], []
    parts = {"recipe": (recipe, seeds, our_rows, overrides),
             "anchor": (anchor, anchor_seeds, their_rows, None)}
    order = run_order(len(seeds), len(anchor_seeds))
    # each recipe with a run still to time, and its overrides, in the order they first run
    pending = {parts[part][0]: parts[part][3] for part, i in order
               if (parts[part][0], parts[part][1][i]) not in measured}
    if pending and not quick:  # a smoke test needs no warm-up, and its images are too few
        warm_up(list(pending.items()), train, test, dev, precision)
    for part, i in order:  # noise falls on both alike
        name, seed_list, rows, changes = parts[part]
        row = measured.get((name, seed_list[i]))
        if row is None:
            row = train_once(name, seed_list[i], train, test, dev, quick, precision, changes)
            measured[(name, seed_list[i])] = row
            if on_run:
                on_run(list(measured.values()))
        rows.append(row)
        runs.append(row)
    ours, theirs = summarize(our_rows), summarize(their_rows)
    return {
        **ours, "device": str(dev), "machine_kind": machine_kind(dev),
        "anchor": theirs,
        "time_ratio": (ours["seconds_mean"] / theirs["seconds_mean"]
                       if ours["seconds_mean"] and theirs["seconds_mean"] else None),
        "goal": GOAL, "clock": CLOCK,
        "runs": runs,
        "quick": quick, "precision_forced": precision,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=RECIPE,
                   help=f"the recipe raced against the anchor (default {RECIPE})")
    add_override_args(p, "the raced recipe only, not the anchor")
    p.add_argument("--anchor", default=ANCHOR,
                   help=f"the reference recipe, run beside it (default {ANCHOR})")
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                   help="one run of the recipe per seed (default 0 1 2 3 4)")
    p.add_argument("--anchor-seeds", type=int, nargs="*", default=SEEDS,
                   help="one run of the anchor per seed (default 0 1 2 3 4; none: skip it)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda or cuda:N: everything "
                        "runs there (default auto)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="force one precision on every recipe (default: each recipe's own, "
                        "bf16 only where the CPU or GPU has it natively); --precision fp32 "
                        "on a CPU with native bf16 measures what it does without")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: one epoch on {QUICK_TRAIN:,} training / {QUICK_TEST} test "
                        f"images")
    p.add_argument("--out", default=None,
                   help="JSON record (default benchmarks/results/train_<kind>.json, kind: cuda, "
                        "mps, cpu-bf16 or cpu-fp32; train_<kind>_<precision>.json when forced)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from <record>.progress.json: only the runs "
                        "it lacks are measured")


def _fmt(value, spec: str, unit: str = "", none: str = "never") -> str:
    return none if value is None else format(value, spec) + unit


def main(args: argparse.Namespace) -> int:
    dev = select_device(args.device)
    out = args.out or default_out(dev, args.precision)
    overrides = dict(args.overrides)
    if overrides and args.recipe == args.anchor:
        raise UsageError(f"--set changes the raced recipe, and {args.recipe!r} is also the "
                         f"anchor: race it against another --anchor")
    progress = Progress(out, fingerprint(args.recipe, args.anchor, dev, args.quick,
                                         args.precision, overrides), args.resume)
    result = run(args.seeds, args.anchor_seeds, args.data_root, args.quick, str(dev),
                 args.download, args.recipe, args.anchor, done=progress.done,
                 on_run=progress.save, precision=args.precision, overrides=overrides)
    print_table(result["runs"], ["recipe", "seed", "test_acc", "test_acc_no_tta", "seconds",
                                 "images_per_second", "precision"])
    print()
    for summary in (result, result["anchor"]):
        if summary["test_acc"]:
            print(f"{summary['recipe']}: {summary['test_acc_mean']:.2f}% ± "
                  f"{summary['test_acc_std']:.2f} (lowest {summary['test_acc_min']:.2f}) over "
                  f"seeds {summary['seeds']}, {summary['seconds_mean']:.0f} s per run; time to "
                  f"{GOAL:g}%: {_fmt(summary['time_to_goal'], '.0f', ' s', 'not reached')}")
    forced = f", {args.precision} forced" if args.precision else ""
    print(f"time ratio {args.recipe} / {args.anchor}: {_fmt(result['time_ratio'], '.3f')} "
          f"on {result['device']} ({result['machine_kind']}{forced})")
    write_record(out, result.pop("runs"), benchmark="train", command=args.command_line,
                 settings=settings(args), recipe_settings=progress.fingerprint["recipes"], **result)
    progress.finish()
    print(f"record written to {out}")
    return 0
