"""Time to the original notebook's 64%: ``race64`` against the original pipeline as it ran.

    python -m cifar_lib bench time-to-64 [--seeds 0 1 2] [--device auto] [--precision P]
                                         [--quick]

``race64`` (the fast recipe's ideas sized for 64% test accuracy) and the original notebook's
training exactly as it ran (SimpleCNN, Adam 1e-3, batch 128, fp32, torchvision ``DataLoader``
with ToTensor + Normalize, each batch copied to the device) take turns, once per seed, on one
device. Neither holds out a validation split (the benchmark protocol of ``race``): the original
trains on all 50,000 training images, ``race64`` on its first 20,000 (one pass). Both are
tested on all 10,000 test images after each epoch, outside the clock (on a GPU, synchronised
before it is read). A run's time to 64% is its training seconds at the end of the first epoch
that reaches 64%; the speed-up is the original's mean time over the racer's. ``--precision``
forces the racer's precision (the original stays fp32, as it ran). Minutes on a CPU, so there
is no ``--resume``: an interrupted run is simply run again.

The record is ``benchmarks/results/time_to_64_<kind>.json`` (``_<precision>`` appended when
forced; kind as in ``race.machine_kind``).
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from ..data import CifarSplit, add_data_args, load_cifar10
from ..device import select_device
from ..inference import accuracy, predict_logits
from ..models import build_model
from ..recipes import configure, get_recipe
from ..speed.clock import synced_clock
from ..speed.loaders import original_pipeline
from ..train import fit, seed_everything
from .race import PROTOCOL, QUICK_TEST, QUICK_TRAIN, default_out, machine_kind, quick_subsets
from .records import now, print_table, settings, write_record

TARGET = 0.64
RACER = "race64"
SEEDS = [0, 1, 2]
ORIGINAL_MAX_EPOCHS = 6  # the original reaches 64% in its second epoch; stop well after


def first_reaching(history: list[dict], target: float = TARGET) -> dict | None:
    """The row of the first epoch whose test accuracy reaches ``target`` (None: no epoch did)."""
    return next((row for row in history if row.get("test_acc", 0.0) >= target), None)


def time_to(history: list[dict], target: float = TARGET) -> float | None:
    """Training seconds at the end of the first epoch whose test accuracy reaches ``target``."""
    row = first_reaching(history, target)
    return None if row is None else row["train_seconds"]


def original_as_ran(test: CifarSplit, root=None, device: str | torch.device = "cpu",
                    max_epochs: int = ORIGINAL_MAX_EPOCHS, workers: int = 2,
                    limit: int | None = None, seed: int = 0) -> list[dict]:
    """The original notebook's training loop, unchanged in substance, on ``device``: batches
    from ``original_pipeline`` copied to the device one by one, fp32. Stops once 64% is reached.

    Returns per-epoch rows: epoch, train_seconds (cumulative, training only), test_acc (0..1).
    """
    device = torch.device(device)
    cfg = get_recipe("original")  # SimpleCNN, Adam 1e-3, batch 128, mean/std 0.5
    seed_everything(seed)
    loader = original_pipeline(root, cfg.batch_size, workers, limit)
    model = build_model(cfg.model, **cfg.model_kwargs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, train_seconds = [], 0.0
    for epoch in range(max_epochs):
        model.train()
        t0 = synced_clock(device)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        train_seconds += synced_clock(device) - t0
        acc = accuracy(predict_logits(model, test.images, cfg.mean, cfg.std), test.labels)
        history.append({"epoch": epoch + 1, "train_seconds": train_seconds, "test_acc": acc})
        if acc >= TARGET:
            break
    return history


def _row(recipe: str, seed: int, history: list[dict], started: str, **extra) -> dict:
    """A run's row: its time to 64% and the accuracy and epoch it got there (else its last)."""
    reached = first_reaching(history)
    shown = reached or history[-1]
    return {"recipe": recipe, "seed": seed,
            "time_to_64": None if reached is None else reached["train_seconds"],
            "test_acc": 100 * shown["test_acc"], "epochs": shown["epoch"],
            "started": started, **extra, "history": history}


def race_once(seed: int, train: CifarSplit, test: CifarSplit, device: torch.device, root=None,
              quick: bool = False, precision: str | None = None) -> list[dict]:
    """One seed: the racer's row, then the original's (recipe, seed, time_to_64 in seconds or
    None, test_acc in % at that epoch, epochs, started, history)."""
    small = quick_subsets(quick)
    started = now()
    cfg = configure(RACER, quick=quick, seed=seed, device=str(device), precision=precision,
                    **PROTOCOL, **small)
    run = fit(cfg, train, test, progress=False)
    racer = _row(RACER, seed, run.history, started, precision=run.metrics["precision"])
    started = now()
    original = original_as_ran(test.subset(small.get("test_subset")), root, device,
                               max_epochs=1 if quick else ORIGINAL_MAX_EPOCHS,
                               workers=0 if quick else 2, limit=small.get("train_subset"),
                               seed=seed)
    return [racer, _row("original", seed, original, started, precision="float32")]


def summarize(rows: list[dict]) -> dict:
    """Per side: the seeds, the times to 64% and their mean (None unless every seed reached it);
    and the speed-up, the original's mean over the racer's."""
    sides = {}
    for name in (RACER, "original"):
        runs = [r for r in rows if r["recipe"] == name]
        times = [r["time_to_64"] for r in runs]
        reached = all(t is not None for t in times) and times
        sides[name] = {"seeds": [r["seed"] for r in runs], "times": times,
                       "mean": statistics.mean(times) if reached else None}
    racer, original = sides[RACER]["mean"], sides["original"]["mean"]
    return {"racer": sides[RACER], "original": sides["original"],
            "speedup": original / racer if racer and original else None}


def run(seeds=SEEDS, root=None, quick: bool = False, device: str = "auto",
        download: bool = False, precision: str | None = None) -> dict:
    """The race on one ``device`` ('auto': the best present), the racer and the original in
    turns, seed by seed, so that a slow spell on a shared machine falls on both."""
    dev = select_device(device)
    train, test = load_cifar10(root, download=download)
    rows = [row for seed in seeds
            for row in race_once(seed, train, test, dev, root, quick, precision)]
    return {**summarize(rows), "recipe": RACER, "target": TARGET, "device": str(dev),
            "machine_kind": machine_kind(dev), "quick": quick, "precision_forced": precision,
            "rows": rows}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                   help="one run of each side per seed (default 0 1 2)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="force the racer's precision (default: its own, bf16 only where it is "
                        "native); the original is fp32, as it ran")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: one epoch on {QUICK_TRAIN:,} training / {QUICK_TEST} test "
                        f"images")
    p.add_argument("--out", default=None,
                   help="JSON record (default benchmarks/results/time_to_64_<kind>.json; "
                        "_<precision> appended when forced)")


def main(args: argparse.Namespace) -> int:
    dev = select_device(args.device)
    out = args.out or default_out(dev, args.precision, "time_to_64")
    result = run(args.seeds, args.data_root, args.quick, str(dev), args.download,
                 args.precision)
    print_table(result["rows"], ["recipe", "seed", "time_to_64", "test_acc", "epochs",
                                 "precision"])
    racer, original = result["racer"], result["original"]
    fmt = lambda s: "not reached by every seed" if s is None else f"{s:.1f} s"  # noqa: E731
    print(f"\ntime to 64% (mean over seeds {args.seeds}): {RACER} {fmt(racer['mean'])}, the "
          f"original as it ran {fmt(original['mean'])}: "
          + (f"{result['speedup']:.1f}× sooner" if result["speedup"] else "no speed-up measured"))
    write_record(out, result.pop("rows"), benchmark="time-to-64", command=args.command_line,
                 settings=settings(args),
                 recipe_settings={RACER: configure(RACER, precision=args.precision,
                                                   **PROTOCOL).to_dict()},
                 **result)
    print(f"record written to {out}")
    return 0
