"""The benchmark records the lessons show, shipped with the package (``FOLDER``), and how to
read any record and print its rows as a markdown table.

A record is the JSON that ``python -m cifar_lib bench NAME`` writes: numbers, the command, the
machine, versions and date (``cifar_lib.bench.records``). The ones a lesson quotes live here so
that they are installed with the package (on Colab the repository's ``benchmarks/`` folder is
not).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..files import read_json

FOLDER = Path(__file__).resolve().parent
# What a table column can be: a row key, or a function of the row (returning the cell's value).
Column = str | Callable[[dict], Any]


def shipped(name: str) -> Path:
    """The path of the shipped record ``name`` (e.g. 'robustness' → FOLDER/robustness.json)."""
    return FOLDER / f"{name}.json"


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


