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
from pathlib import Path

from ..corruptions import CORRUPTIONS
from ..data import add_data_args
from ..robustness import (
    DEFAULT_RUNS,
    QUICK_IMAGES,
    RECORD,
    SEVERITY_LEVELS,
    TEST_IMAGES,
    _shown,
    run,
    table,
)
from .records import print_table, settings, write_record

DEFAULT_OUT = RECORD


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"JSON record (default {_shown(DEFAULT_OUT)}, shipped with the package)")


def main(args: argparse.Namespace) -> int:
    images = min(args.images, QUICK_IMAGES) if args.quick else args.images
    result = run(args.runs, images=images, seed=args.seed, tta_level=args.tta_level,
                 device=args.device, root=args.data_root, download=args.download,
                 log=lambda s: print(s, file=sys.stderr), progress=not args.no_progress)
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
