"""Inference: throughput and latency per batch size, CPU and GPU, measured properly.

    python -m cifar_lib bench inference --run-dir RUN [--batch-sizes 1,8,32] [--device all]
        [--compile] [--quick] [--out FILE.json]

How it measures is explained in ``cifar_lib.speed.latency``; this command prints the rows as a
table and writes them as a JSON record.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..checkpoint import resolve_checkpoint
from ..speed.latency import (
    benchmark_run,
    parse_batch_sizes,
)
from .records import print_table, settings, write_record


def _fmt(v, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _latency(r: dict) -> str:
    text = _fmt(r.get("median_ms"), ".3g")
    if r.get("iqr_ms") is not None:
        text += f" [{_fmt(r['iqr_ms'], '.2g')}]"
    return text


# The rows as a table (records.markdown_table(rows, COLUMNS)): latency median [IQR] in ms.
COLUMNS = {
    "device": "device", "threads": lambda r: r.get("threads") or "", "variant": "variant",
    "dtype": "dtype", "method": "method", "batch": "batch_size",
    "median ms [IQR]": _latency, "images/s": lambda r: _fmt(r.get("images_per_s"), ",.0f"),
    "speedup": lambda r: _fmt(r.get("speedup"), ".2f"), "status": "status",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file)")
    p.add_argument("--batch-sizes",
                   help="comma-separated, e.g. 1,8,32,128,512,1024 (the default)")
    p.add_argument("--device", choices=["all", "auto", "cpu", "cuda"], default="all",
                   help="all: CPU and GPU (GPU rows say when there is none; the default); "
                        "auto: the GPU if there is one, else the CPU")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (slow to compile on a CPU)")
    p.add_argument("--min-run-time", type=float, help="seconds of timing per row (default 0.3)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's, usually the cores)")
    p.add_argument("--out", help="JSON record (default: RUN_DIR/bench_inference.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: batch sizes 1,32,256 and short timings")


def main(args: argparse.Namespace) -> int:
    kwargs = {"device": args.device, "compile": args.compile}
    if args.batch_sizes:
        kwargs["batch_sizes"] = parse_batch_sizes(args.batch_sizes)
    if args.min_run_time is not None:
        kwargs["min_run_time"] = args.min_run_time
    if args.threads is not None:
        kwargs["threads"] = args.threads
    rows, model_info = benchmark_run(args.run_dir, quick=args.quick,
                                     log=lambda s: print(s, file=sys.stderr), **kwargs)
    out = Path(args.out) if args.out else resolve_checkpoint(args.run_dir).parent / \
        "bench_inference.json"
    write_record(out, rows, benchmark="inference", command=args.command_line,
                 settings=settings(args), model=model_info)
    print_table(rows, COLUMNS)
    print(f"\nrecord written to {out}")
    return 0
