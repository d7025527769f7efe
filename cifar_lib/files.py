"""Run-folder files: written atomically (never half-written), JSON kept strict, and the one
error for a file that cannot be used."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A run-folder file (checkpoint, calibration) that is missing, unreadable, or for another
    model; the message names the fix."""


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(f)`` into a temporary file in the same folder, then rename
    it over the old one: a crash mid-write never leaves a half-written file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed process
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide run folders from others
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf as None and numpy scalars as Python numbers: strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (NaN → null), atomically."""
    data = json.dumps(json_safe(obj), indent=2, allow_nan=False).encode()
    atomic_write(Path(path), lambda f: f.write(data))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)
