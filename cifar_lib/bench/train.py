"""Training: the fast recipe's accuracy over seeds, and its race to the original's accuracy.

    python -m cifar_lib bench train [--seeds 0 1 2] [--device auto] [--quick] [--out FILE.json]

1. Accuracy: the ``fast`` recipe once per seed on the full data; test accuracy with TTA on all
   10,000 test images; ``seconds`` is the wall time from loaded data to that final accuracy.
2. Time to 64%: the ``fast_small`` recipe (the same recipe sized for 64%) against the original
   notebook's pipeline exactly as it ran (SimpleCNN, Adam 1e-3, batch 128, fp32, torchvision
   DataLoader with ToTensor + Normalize, each batch copied to the device), side by side in this
   run, on the same device. Both count training time only (on a GPU, synchronised before the
   clock is read), evaluated at the end of each epoch: the same rule for both.
Prints a markdown table and writes a JSON record.
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
from ..train import fit, seed_everything
from .data import original_pipeline
from .records import print_table, settings, write_record
from .timing import synced_clock

TARGET = 0.64
DEFAULT_OUT = "benchmarks/results/train_fast.json"
# --quick: a smoke test of the whole benchmark, not a measurement (one epoch of small subsets).
QUICK_TRAIN, QUICK_TEST = 512, 256


def time_to(history: list[dict], target: float = TARGET) -> float | None:
    """Training seconds at the end of the first epoch whose test accuracy reaches ``target``."""
    for row in history:
        if row.get("test_acc", 0.0) >= target:
            return row["train_seconds"]
    return None


def original_as_ran(test: CifarSplit, root=None, device: str | torch.device = "cpu",
                    max_epochs: int = 6, workers: int = 2, limit: int | None = None,
                    seed: int = 0) -> list[dict]:
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


def run(seeds=(0, 1, 2), root=None, quick: bool = False, device: str = "auto",
        download: bool = False) -> dict:
    """Both parts of the benchmark on one ``device`` ('auto': the best present); returns the
    record's fields, with the per-seed rows under 'runs'. ``quick``: 512 training and 256
    test images, one epoch each, the original pipeline without worker processes."""
    dev = select_device(device)
    train, test = load_cifar10(root, download=download)
    small = dict(train_subset=QUICK_TRAIN, test_subset=QUICK_TEST) if quick else {}
    runs = []
    for seed in seeds:
        # eval_every=0: evaluate once, at the end (with the recipe's TTA).
        cfg = configure("fast", quick=quick, seed=seed, eval_every=0, device=str(dev), **small)
        t0 = synced_clock(dev)
        result = fit(cfg, train, test, progress=not quick)
        seconds = synced_clock(dev) - t0  # loaded data → final (TTA) accuracy
        m = result.metrics
        runs.append({"seed": seed, "test_acc": 100 * m.get("test_acc_tta", m["test_acc"]),
                     "test_acc_no_tta": 100 * m["test_acc"], "seconds": seconds,
                     "images_per_second": m["images_per_second"], "epochs": cfg.epochs})
    fast_small = fit(configure("fast_small", quick=quick, device=str(dev), **small), train, test,
                     progress=False).history
    original = original_as_ran(test.subset(small.get("test_subset")), root, dev,
                               max_epochs=1 if quick else 6, workers=0 if quick else 2,
                               limit=small.get("train_subset"))
    accs = [r["test_acc"] for r in runs]
    fast_t64, original_t64 = time_to(fast_small), time_to(original)
    return {
        "recipe": "fast", "device": str(dev),
        "seeds": list(seeds), "test_acc": accs, "seconds": [r["seconds"] for r in runs],
        "test_acc_mean": statistics.mean(accs) if accs else None,
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "images_per_second": (statistics.mean(r["images_per_second"] for r in runs)
                              if runs else None),
        "time_to_64": {"fast": fast_t64, "seed": original_t64,
                       "speedup": original_t64 / fast_t64 if fast_t64 and original_t64 else None},
        "fast_small_history": fast_small, "seed_recipe_history": original, "runs": runs,
        "quick": quick,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one run of the fast recipe per seed (default 0 1 2)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda or cuda:N: both sides of "
                        "the race run there (default auto)")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: one epoch on {QUICK_TRAIN:,} training / {QUICK_TEST} test "
                        f"images")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")


def main(args: argparse.Namespace) -> int:
    result = run(args.seeds, args.data_root, args.quick, args.device, args.download)
    print_table(result["runs"])
    t = result["time_to_64"]
    fmt = lambda v, spec, unit="": "never" if v is None else format(v, spec) + unit
    print(f"\nmean test accuracy {result['test_acc_mean']:.2f}% ± {result['test_acc_std']:.2f} "
          f"over seeds {result['seeds']} on {result['device']}")
    print(f"time to 64%: fast_small {fmt(t['fast'], '.1f', ' s')}, original recipe as it ran "
          f"{fmt(t['seed'], '.1f', ' s')}: " + (f"{t['speedup']:.1f}× sooner" if t["speedup"]
                                               else "no speed-up measured"))
    write_record(args.out, result.pop("runs"), benchmark="train", command=args.command_line,
                 settings=settings(args), **result)
    print(f"record written to {args.out}")
    return 0
