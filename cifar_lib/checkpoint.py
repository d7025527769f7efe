"""Checkpoints and run folders.

A run folder (e.g. ``runs/fast``) holds ``checkpoint.pt`` (weights, the config that rebuilds the
model, class names, normalisation, and the training state needed to resume), ``metrics.json``
(the final results) and ``history.json`` (one row per epoch). Files are written atomically:
to a temporary file in the same folder, then renamed over the old one, so a crash mid-write
never leaves a half-written file in place.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
HISTORY = "history.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or for another model."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
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
    _atomic_write(Path(path), lambda f: f.write(data))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel / torch.compile wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, model_name: str,
                    model_kwargs: dict, classes, mean, std, config: dict | None = None,
                    **state) -> None:
    """Save weights plus everything needed to rebuild and use the model.

    ``state`` adds resumable training state (optimizer, epoch, lookahead, history, rng).
    """
    payload = {"format": FORMAT, "model": model_name, "model_kwargs": dict(model_kwargs),
               "classes": list(classes), "mean": list(mean), "std": list(std),
               "config": dict(config or {}), "state_dict": unwrap(model).state_dict(), **state}
    _atomic_write(Path(path), lambda f: torch.save(payload, f))


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder or a checkpoint file → the checkpoint file, with a clear error if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first, e.g. "
                              f"`python -m cifar_lib train --run-dir {path.parent}`")
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint (file or run folder) safely: ``weights_only=True``, no code runs."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a cifar_lib checkpoint (format {FORMAT})")
    return ckpt


def load_weights(model: nn.Module, ckpt: dict, model_name: str | None = None) -> None:
    """Load ``ckpt``'s weights into ``model``, refusing a checkpoint of another architecture."""
    if model_name is not None and ckpt["model"] != model_name:
        raise CheckpointError(f"checkpoint is for model {ckpt['model']!r} "
                              f"({ckpt['model_kwargs']}), not {model_name!r}: "
                              f"build {ckpt['model']!r} or use load_model() which reads it")
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    try:
        unwrap(model).load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint does not fit this model ({ckpt['model']} "
                              f"{ckpt['model_kwargs']}): {str(e).splitlines()[0]}") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint (file or run folder) describes, in eval mode.

    Returns (model, checkpoint dict); the dict has 'classes', 'mean', 'std', 'config'.
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model"], **ckpt["model_kwargs"])
    load_weights(model, ckpt)
    return model.to(device).eval(), ckpt
