"""Data pipeline: one epoch of training batches, ours against the original's torchvision DataLoader.

    python -m cifar_lib bench data [--batch-size 128] [--workers 2] [--limit N] [--out FILE.json]

Side by side in one run: torchvision's CIFAR10 dataset + DataLoader with ToTensor + Normalize
(the original notebook's pipeline, ``original_pipeline``) and ``BatchIterator`` (plain, and with
flip + translate). Prints a markdown table of images/s and writes a JSON record.
"""
from __future__ import annotations

import argparse

from ..data import add_data_args
from ..speed.loaders import run
from .records import print_table, settings, write_record

DEFAULT_OUT = "benchmarks/results/data_pipeline.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (default 128)")
    p.add_argument("--workers", type=int, default=2,
                   help="DataLoader workers for the original pipeline (default 2)")
    p.add_argument("--limit", type=int, help="only the first N training images (quick check)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")


def main(args: argparse.Namespace) -> int:
    rows = run(args.data_root, args.batch_size, args.workers, args.limit, args.download)
    print_table(rows)
    write_record(args.out, rows, benchmark="data_pipeline", command=args.command_line,
                 settings=settings(args))
    print(f"\nrecord written to {args.out}")
    return 0
