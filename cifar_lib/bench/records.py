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
from typing import Mapping, Sequence

import torch

from ..device import cpu_flag_names, cpu_has_native_bf16, cpu_model, read_cpuinfo
from ..files import json_safe, write_json
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
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def settings(args: argparse.Namespace) -> dict:
    """A parsed command line's options, for a record (without the command's own bookkeeping)."""
    return {k: v for k, v in vars(args).items()
            if k not in ("command", "benchmark", "command_line", "debug")}


def make_record(rows: Sequence[dict], *, benchmark: str = "", command: str | None = None,
                settings: dict | None = None, **extra) -> dict:
    """The JSON-ready record: benchmark name, date, command (as typed; None from a notebook),
    machine, settings, ``extra`` fields, rows."""
    return json_safe({
        "benchmark": benchmark,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
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
