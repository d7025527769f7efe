"""Benchmark records and tables: what was measured, where, with what, and when (one format for all).

Every benchmark ends the same way: ``print_table(rows, columns)`` shows the rows as markdown and
``write_record(path, rows, benchmark=..., command=args.command_line, settings=settings(args))``
saves them as JSON beside the machine they were measured on.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..device import cpu_flag_names, cpu_has_native_bf16, cpu_malloc, cpu_model, read_cpuinfo
from ..errors import UsageError
from ..files import json_safe, read_json, write_json
from ..provenance import code_version
from ..records import Column, markdown_table, read_record  # noqa: F401  (benchmarks read too)


def cpu_flags() -> dict:
    """The CPU features CPU timings depend on: native bf16 (AVX512-BF16/AMX), AVX-512F, AVX2."""
    flags = cpu_flag_names()
    return {"native_bf16": cpu_has_native_bf16(), "avx512f": "avx512f" in flags,
            "avx2": "avx2" in flags}


def cpu_id(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU's vendor, family and model numbers from /proc/cpuinfo (empty elsewhere): the model
    name alone does not tell two generations apart (on AMD, family 25 is Zen 3 and Zen 4, 26 is
    Zen 5), and CPU timings change with the generation."""
    info = read_cpuinfo(cpuinfo)
    fields = {"vendor_id": "vendor", "cpu family": "family", "model": "model"}
    return {name: int(info[key]) if info[key].isdigit() else info[key]
            for key, name in fields.items() if key in info}


def environment() -> dict:
    """What the numbers depend on: CPU model, generation and flags, threads, GPU, versions, and
    the code (``cifar_lib``: its version and git commit, see ``provenance.code_version``)."""
    return {"cifar_lib": code_version(), "cpu": cpu_model(), "cpu_id": cpu_id(),
            "cpu_flags": cpu_flags(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cpu_malloc": cpu_malloc(),
            "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def settings(args: argparse.Namespace) -> dict:
    """A parsed command line's options, for a record (without the command's own bookkeeping)."""
    return {k: v for k, v in vars(args).items()
            if k not in ("command", "benchmark", "command_line", "debug")}


def now() -> str:
    """The local time with its UTC offset, to the second: how records date what they measure."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def make_record(rows: Sequence[dict], *, benchmark: str = "", command: str | None = None,
                settings: dict | None = None, **extra) -> dict:
    """The JSON-ready record: benchmark name, date, command (as typed; None from a notebook),
    machine, settings, ``extra`` fields, rows."""
    return json_safe({
        "benchmark": benchmark,
        "date": now(),
        "command": command, "machine": environment(), "settings": settings or {},
        **extra, "rows": list(rows)})


def write_record(path, rows: Sequence[dict], **kwargs) -> dict:
    """Write ``make_record(rows, **kwargs)`` to ``path`` as JSON (atomically); returns it."""
    record = make_record(rows, **kwargs)
    write_json(path, record)
    return record


def print_table(rows: Sequence[dict],
                columns: Sequence[str] | Mapping[str, Column] | None = None) -> None:
    """Print ``markdown_table(rows, columns)``."""
    print(markdown_table(rows, columns))


# ----------------------------------------------------------------------------- resuming
# A benchmark of many hour-long runs keeps its rows in ``<record>.progress.json`` after each
# run; ``--resume`` continues from there only if the rows were measured alike.

def machine_fingerprint() -> dict:
    """What timings depend on and rows must share to be compared: the CPU, its flags, torch's
    threads, how CPU training allocates memory, torch's version, and the GPU."""
    env = environment()
    return {k: env[k] for k in ("cpu", "cpu_flags", "torch_threads", "cpu_malloc", "torch",
                                "gpu")}


def progress_path(out) -> Path:
    """Where an unfinished run of the benchmark keeps its rows: ``<record>.progress.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".progress.json")


class ResumeError(UsageError):
    """Progress from an interrupted run that cannot be continued as asked; says what to do."""


def load_progress(path, expected: dict, resume: bool) -> list[dict]:
    """The rows an interrupted run measured, to continue with ``--resume``. Without it, an
    existing progress file is an error rather than lost hours; with it, progress measured
    under a fingerprint other than ``expected`` (a dict of what rows must share, with a
    "machine" entry from ``machine_fingerprint``) is an error naming what differs."""
    path = Path(path)
    if not path.is_file():
        return []
    saved = read_json(path)
    if not resume:
        raise ResumeError(f"an interrupted run left {len(saved['runs'])} measured run(s) in "
                          f"{path}: add --resume to continue it (with make: BENCH_ARGS=--resume), "
                          "or delete that file to start over")
    found = saved["fingerprint"]
    differ = [k for k in expected if found.get(k) != expected[k]]
    differ += [f"machine.{k}" for k in expected["machine"]
               if "machine" in differ and found["machine"].get(k) != expected["machine"][k]]
    if differ:
        raise ResumeError(f"cannot resume {path}: it was measured with a different "
                          f"{', '.join(differ)}; rows measured apart would not compare. Delete it "
                          "to start over here")
    return saved["runs"]


class Progress:
    """The rows of a benchmark of many long runs, saved to ``<record>.progress.json`` after
    each run, so that ``--resume`` continues an interrupted one (``load_progress``).

    ``fingerprint``: what the rows must share (with a "machine" entry from
    ``machine_fingerprint``). ``done``: the rows measured before, to reuse."""

    def __init__(self, out, fingerprint: dict, resume: bool):
        self.path = progress_path(out)
        self.fingerprint = json_safe(fingerprint)  # as JSON holds it, so a saved one compares equal
        self.done = load_progress(self.path, self.fingerprint, resume)
        if self.done:
            print(f"resuming: {len(self.done)} run(s) already measured in {self.path}")

    def save(self, rows: Sequence[dict]) -> None:
        """Save the rows so far, and every row measured before that a resumed run has not
        reached yet (a benchmark visits rows in its own order, not in the order measured)."""
        pending = [r for r in self.done if r not in rows]
        write_json(self.path, {"fingerprint": self.fingerprint, "runs": [*rows, *pending]})

    def finish(self) -> None:
        """The record is written: its progress file goes."""
        self.path.unlink(missing_ok=True)


