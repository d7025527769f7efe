"""Benchmark records: what was measured, where, with what, and when (one format for all)."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import json_safe, write_json
from .device import cpu_model


def environment() -> dict:
    """What the numbers depend on: CPU model, threads, GPU, library versions."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def command_line() -> str:
    """How this process was started, as a user would type it (``python -m cifar_lib.x ...``)."""
    prog = Path(sys.argv[0])
    start = [str(prog)]
    if prog.suffix == ".py" and prog.parent.name == "cifar_lib":  # run with python -m
        start = ["-m", "cifar_lib" + ("" if prog.stem == "__main__" else f".{prog.stem}")]
    return " ".join(shlex.quote(a) for a in ["python", *start, *sys.argv[1:]])


def make_record(rows: Sequence[dict], *, benchmark: str = "", command: str | None = None,
                settings: dict | None = None, **extra) -> dict:
    """The JSON-ready record: benchmark name, date, command, machine, settings, extra, rows."""
    if command is None:
        command = command_line()
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


def markdown_table(rows: Sequence[dict]) -> str:
    """Rows of dicts (the first row's keys are the columns) → a markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: Sequence[dict]) -> None:
    print(markdown_table(rows))
