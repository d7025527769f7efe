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
from typing import Any, Callable, Mapping, Sequence

import torch

from ..checkpoint import json_safe, read_json, write_json
from ..device import cpu_flag_names, cpu_has_native_bf16, cpu_model, read_cpuinfo
from ..provenance import code_version

# What a table column can be: a row key, or a function of the row (returning the cell's value).
Column = str | Callable[[dict], Any]


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


def read_record(path, benchmark: str) -> dict:
    """A committed record; a missing one is a FileNotFoundError naming the command that
    writes it (``python -m cifar_lib bench BENCHMARK``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {benchmark} record at {path}: run `python -m cifar_lib bench "
                                f"{benchmark}` (or `make bench-{benchmark}`) to measure one")
    return read_json(path)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None and NaN: blank
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict],
                   columns: Sequence[str] | Mapping[str, Column] | None = None) -> str:
    """Rows of dicts → a GitHub-markdown table, one line per row.

    columns: None (the first row's keys), a list of keys, or a mapping header → key or
    function of the row. Floats are shown with 4 significant digits, None as a blank; a
    function may return a ready-made string.
    """
    if columns is None:
        columns = list(rows[0]) if rows else []
    if not isinstance(columns, Mapping):
        columns = {key: key for key in columns}
    if not columns:
        return ""
    getters = [c if callable(c) else (lambda r, k=c: r.get(k)) for c in columns.values()]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(get(r)) for get in getters) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: Sequence[dict],
                columns: Sequence[str] | Mapping[str, Column] | None = None) -> None:
    """Print ``markdown_table(rows, columns)``."""
    print(markdown_table(rows, columns))
