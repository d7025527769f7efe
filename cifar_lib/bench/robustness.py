"""Robustness: accuracy under common corruptions (CIFAR-10-C style), measured on the fly.

    python -m cifar_lib bench robustness [--runs RUN ...] [--images 10000] [--seed 0]
        [--tta-level 0] [--device auto] [--quick] [--out FILE.json]

Hendrycks & Dietterich (2019) showed that a model's clean test accuracy says little about how it
copes with noise, blur, JPEG artefacts or a dark photo. Each run (by default both models shipped
with cifar_lib, "fast" and "original") is measured on the clean test images and on the same
images under each corruption of ``cifar_lib.corruptions`` at severities 1..5, all made with one
``--seed``, so every model sees identical inputs. TTA is off (level 0) by default for every
model: it would multiply the cost by six and favour the model that was trained to use it.

Rows (one per model × corruption × severity, plus a 'clean' row with severity 0 per model):
model (the run folder's name), run, corruption, severity, accuracy (0..1), images. The record
adds ``summary``: per model the clean accuracy, the mean over all corrupted rows, and the mean
per corruption. ``cifar_lib.plots.plot_corruption_heatmap`` / ``plot_corruption_curves`` draw it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..checkpoint import load_run
from ..corruptions import CORRUPTIONS
from ..data import add_data_args, load_cifar10
from ..device import select_device
from ..errors import UsageError
from ..pretrained import RUNS
from ..robustness import CLEAN, SEVERITY_LEVELS, corruption_accuracy, model_name, summarize
from . import records
from .records import print_table, settings, write_record

# The record ships inside the package, so that 03_evaluate shows it on Colab too.
RECORD = Path(__file__).resolve().parent / "results" / "robustness.json"
DEFAULT_OUT = RECORD
DEFAULT_RUNS = (RUNS / "fast", RUNS / "original")
# 51 passes over the images per model: the first 2,000 test images keep a CPU run to minutes
# (each cell then has a 95% interval of about ±2 points); --images 10000 for all of them.
TEST_IMAGES = 2_000
QUICK_IMAGES = 200  # --quick: a smoke test


def _shown(path) -> str:
    """A run's path as a record shows it: relative to the current folder when inside it (the
    shipped runs from a checkout: cifar_lib/pretrained_runs/fast), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def run(runs, *, images: int = TEST_IMAGES, seed: int = 0, tta_level: int = 0,
        device: str = "auto", root=None, download: bool = False, log=None) -> dict:
    """The record's fields: rows (each with the run's path), summary, device, images, seconds.
    ``images``: the first N test images (10,000: all of them)."""
    if images < 1:
        raise UsageError(f"--images must be at least 1 (10000 is the whole test set), got {images}")
    dev = select_device(device)
    _, test = load_cifar10(root, download=download)
    test = test.subset(images)
    models = [load_run(r, dev) for r in runs]
    paths = {model_name(lm): _shown(r) for lm, r in zip(models, runs)}
    t0 = time.perf_counter()
    rows = corruption_accuracy(models, test, seed=seed, tta_level=tta_level, device=str(dev),
                               log=log)
    seconds = time.perf_counter() - t0
    rows = [{"model": r["model"], "run": paths[r["model"]], **r} for r in rows]
    return {"rows": rows, "summary": summarize(rows), "device": str(dev), "images": len(test),
            "seed": seed, "tta_level": tta_level, "seconds": seconds}


def read_record(path: str | Path = RECORD) -> dict:
    """The committed robustness record (``RECORD`` by default)."""
    return records.read_record(path, "robustness")


def table(rows: list[dict]) -> list[dict]:
    """One line per model × corruption: accuracy in % at each severity and their mean."""
    lines: dict[tuple, dict] = {}
    for r in rows:
        line = lines.setdefault((r["model"], r["corruption"]),
                                {"model": r["model"], "corruption": r["corruption"]})
        line[str(r["severity"]) if r["corruption"] != CLEAN else "mean"] = 100 * r["accuracy"]
    for line in lines.values():
        accs = [line[str(s)] for s in SEVERITY_LEVELS if str(s) in line]
        if accs:
            line["mean"] = sum(accs) / len(accs)
    return list(lines.values())


def _pct(key: str):
    return lambda line: "" if line.get(key) is None else f"{line[key]:.1f}"


COLUMNS = {"model": "model", "corruption": "corruption",
           **{f"sev {s} %": _pct(str(s)) for s in SEVERITY_LEVELS}, "mean %": _pct("mean")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", default=[_shown(r) for r in DEFAULT_RUNS],
                   help="run folders to compare (default: the shipped fast and original runs); "
                        "each model is named by its folder's name")
    p.add_argument("--images", type=int, default=TEST_IMAGES,
                   help=f"the first N test images (default {TEST_IMAGES:,}; 10000: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruptions (noise)")
    p.add_argument("--tta-level", type=int, choices=[0, 1, 2], default=0,
                   help="test-time augmentation for every model (default 0: none)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: the first {QUICK_IMAGES} test images")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"JSON record (default {_shown(DEFAULT_OUT)}, shipped with the package)")


def main(args: argparse.Namespace) -> int:
    images = min(args.images, QUICK_IMAGES) if args.quick else args.images
    result = run(args.runs, images=images, seed=args.seed, tta_level=args.tta_level,
                 device=args.device, root=args.data_root, download=args.download,
                 log=lambda s: print(s, file=sys.stderr))
    print_table(table(result["rows"]), COLUMNS)
    print(f"\n{result['images']:,} test images, seed {args.seed}, TTA level {args.tta_level}, "
          f"{len(CORRUPTIONS)} corruptions × 5 severities on {result['device']}, "
          f"{result['seconds']:.0f} s")
    for name, s in result["summary"].items():
        print(f"{name}: clean {s['clean']:.2%}, mean corrupted {s['mean_corrupted']:.2%} "
              f"({100 * (s['clean'] - s['mean_corrupted']):.1f} points lower)")
    write_record(Path(args.out), result.pop("rows"), benchmark="robustness",
                 command=args.command_line, settings=settings(args), **result)
    print(f"record written to {args.out}")
    return 0
