"""Training throughput (images/s) of each recipe on the CPU and on each GPU present.

    python -m cifar_lib bench throughput [--recipes original fast] [--steps 20] [--warmup 3]
        [--devices all] [--quick] [--out FILE.json]

How it measures is explained in ``cifar_lib.speed.steps``; this command prints the rows as a
table and writes them as a JSON record.
"""
from __future__ import annotations

import argparse
import sys

from ..data import add_data_args
from ..speed.steps import (
    DEFAULT_RECIPES,
    QUICK_STEPS,
    QUICK_WARMUP,
    STEPS,
    WARMUP,
    run,
)
from .records import print_table, settings, write_record

DEFAULT_OUT = "benchmarks/results/train_throughput.json"


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


COLUMNS = {
    "recipe": "recipe", "device": "device", "device name": "device_name",
    "precision": "precision", "channels last": "channels_last", "batch": "batch_size",
    "ms / step": lambda r: _fmt(r["seconds_per_step"] and 1e3 * r["seconds_per_step"], ".4g"),
    "images/s": lambda r: _fmt(r["images_per_s"], ",.0f"),
    "images/s on crops": lambda r: _fmt(r["crop_images_per_s"], ",.0f")
                                   + (f" ({r['crop_size']}²)" if r["crop_size"] else ""),
    "speed-up vs CPU": lambda r: _fmt(r["speedup_vs_cpu"], ".1f") + ("×" if r["speedup_vs_cpu"]
                                                                       else ""),
    "status": "status",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES),
                   help="recipes to time (default: original fast)")
    p.add_argument("--steps", type=int,
                   help=f"timed steps (default {STEPS}; {QUICK_STEPS} with --quick)")
    p.add_argument("--warmup", type=int,
                   help=f"untimed steps first (default {WARMUP}; {QUICK_WARMUP} with --quick)")
    p.add_argument("--devices", nargs="+", default=["all"],
                   help="all (the CPU and every GPU; default), auto (the device training "
                        "would use), or names: cpu cuda cuda:1 ...")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: 2,048 training images, batch ≤ 256, {QUICK_WARMUP} + "
                        f"{QUICK_STEPS} steps")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")


def main(args: argparse.Namespace) -> int:
    rows = run(args.recipes, args.devices, args.steps, args.warmup, root=args.data_root,
               quick=args.quick, download=args.download, log=lambda s: print(s, file=sys.stderr))
    print_table(rows, COLUMNS)
    write_record(args.out, rows, benchmark="train_throughput", command=args.command_line,
                 settings=settings(args))
    print(f"\nrecord written to {args.out}")
    return 0
