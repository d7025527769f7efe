"""Allocator: CPU training steps with glibc's malloc as it is, and keeping freed memory.

    python -m cifar_lib bench allocator [--recipes fast airbench94] [--rounds 3] [--steps 10]

On Linux with glibc, ``fit`` makes malloc keep freed memory for reuse
(``device.keep_freed_memory``) rather than returning every large block to the kernel and
faulting fresh zeroed pages in for the next one. This measures what that buys: each round runs
``bench throughput`` on the CPU in two fresh processes, once with $CIFAR_LIB_KEEP_FREED_MEMORY=0
(malloc as it is) and once without (kept), in turns so that a slow spell falls on both. Each
row: recipe, allocator, round, images/s, and the process's minor page faults and system
seconds (the kernel's work). ``speedup``: median images/s kept over as it is, per recipe.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ..data import add_data_args
from ..device import KEEP_FREED_MEMORY
from .records import print_table, settings, write_record

DEFAULT_OUT = "benchmarks/results/allocator.json"
ALLOCATORS = {"as it is": "0", "kept": "1"}  # $CIFAR_LIB_KEEP_FREED_MEMORY for each


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipes", nargs="+", default=["fast", "airbench94"],
                   help="recipes to time (default: fast airbench94)")
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs (default 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    add_data_args(p)
    p.add_argument("--quick", action="store_true", help="smoke test: bench throughput --quick")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")


def _throughput(args: argparse.Namespace, allocator: str, out: Path) -> tuple[list[dict], dict]:
    """One ``bench throughput`` process on the CPU: its rows, and its page faults and system
    seconds (from the kernel's accounting of finished children)."""
    command = [sys.executable, "-m", "cifar_lib", "bench", "throughput", "--devices", "cpu",
               "--recipes", *args.recipes, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--out", str(out)]
    if args.data_root:
        command += ["--data-root", str(args.data_root)]
    if args.quick:
        command.append("--quick")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, KEEP_FREED_MEMORY: ALLOCATORS[allocator]})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return json.loads(out.read_text())["rows"], {
        "minor_page_faults": after.ru_minflt - before.ru_minflt,
        "system_seconds": after.ru_stime - before.ru_stime}


def main(args: argparse.Namespace) -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for allocator in ALLOCATORS:
                measured, process = _throughput(args, allocator, Path(tmp) / "throughput.json")
                rows += [{"recipe": r["recipe"], "allocator": allocator, "round": round_,
                          "images_per_s": r["images_per_s"],
                          "seconds_per_step": r["seconds_per_step"], **process}
                         for r in measured]
    speedup = {}
    for recipe in args.recipes:
        median = {a: statistics.median(r["images_per_s"] for r in rows
                                       if r["recipe"] == recipe and r["allocator"] == a)
                  for a in ALLOCATORS}
        speedup[recipe] = median["kept"] / median["as it is"]
    print_table(rows, ["recipe", "allocator", "round", "images_per_s", "minor_page_faults",
                       "system_seconds"])
    print("\n" + ", ".join(f"{r}: {s:.3f}× the images/s with freed memory kept"
                           for r, s in speedup.items()))
    write_record(args.out, rows, benchmark="allocator", command=args.command_line,
                 settings=settings(args), speedup=speedup)
    print(f"record written to {args.out}")
    return 0
