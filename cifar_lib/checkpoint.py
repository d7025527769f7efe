"""Checkpoints and run folders.

A run folder (e.g. ``runs/fast``) holds ``checkpoint.pt`` (weights, the config that rebuilds the
model, class names, normalisation, and the training state needed to resume), ``metrics.json``
(the final results), ``history.json`` (one row per epoch) and, once ``python -m cifar_lib
calibrate`` has run, ``calibration.json`` (the temperature that calibrates its probabilities).
Files are written atomically:
to a temporary file in the same folder, then renamed over the old one, so a crash mid-write
never leaves a half-written file in place.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import CLASSES
from .models import build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
HISTORY = "history.json"
CALIBRATION = "calibration.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or for another model."""


def _atomic_write(path: Path, write) -> None:
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
    is_file = path.is_file() or (not path.is_dir() and path.suffix == ".pt")
    folder, file = (path.parent, path) if is_file else (path, path / CHECKPOINT)
    if not file.is_file():
        raise CheckpointError(f"no checkpoint at {file}: train one first, e.g. "
                              f"`python -m cifar_lib train --run-dir {folder}`")
    return file


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint (file or run folder) safely: ``weights_only=True``, no code runs.

    Tensors go to ``map_location`` (resuming on a GPU maps everything to the model's device).
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's own message suggests weights_only=False, which would run whatever code the
        # file carries: never pass that advice on.
        why = ("it holds Python objects besides tensors and plain values (refused unread: "
               "cifar_lib never writes those)" if "weights only" in str(e).lower()
               else f"the file is truncated or corrupt ({type(e).__name__})")
        raise CheckpointError(f"{path} is not a readable checkpoint: {why}; train the run "
                              f"again or copy the file again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a cifar_lib checkpoint (format {FORMAT})")
    return ckpt


def load_weights(model: nn.Module, ckpt: dict, model_name: str | None = None) -> None:
    """Load ``ckpt``'s weights into ``model``, refusing a checkpoint of another architecture.

    Weights stored in fp16 (the shipped model) are widened to the model's dtype.
    """
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


@dataclass
class LoadedModel:
    """A model with what it needs to be used: class names, normalisation, its TTA level, and
    where it came from (``folder``: the run folder, None when built in memory).

    ``temperature``: the T that calibrates its probabilities (softmax(logits / T)), read from
    ``calibration.json``; 1.0 = uncalibrated. ``calibration``: that file's contents, or None.
    """
    model: nn.Module
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tta_level: int = 0
    name: str = ""
    config: dict = field(default_factory=dict)
    folder: Path | None = None
    temperature: float = 1.0
    calibration: dict | None = None

    @classmethod
    def from_checkpoint(cls, model: nn.Module, ckpt: dict, folder: Path | None = None
                        ) -> "LoadedModel":
        return cls(model.eval(), tuple(ckpt.get("classes", CLASSES)), tuple(ckpt["mean"]),
                   tuple(ckpt["std"]), int(ckpt.get("config", {}).get("tta_level", 0)),
                   ckpt["model"], dict(ckpt.get("config", {})), folder)

    @property
    def calibrated_tta_level(self) -> int:
        """The TTA level whose logits the temperature was fitted on (the run's own by default)."""
        return int((self.calibration or {}).get("tta_level", self.tta_level))

    def temperature_for(self, tta_level: int | None = None, calibrated: bool = True) -> float:
        """The T to divide logits by: the fitted temperature when ``calibrated`` and the logits
        come from the TTA level it was fitted on (None: the run's own level), else 1.0.

        A temperature fitted on TTA-averaged logits does not fit single-view logits (averaging
        shrinks them), so it is not applied to another level.
        """
        tta = self.tta_level if tta_level is None else tta_level
        return self.temperature if calibrated and tta == self.calibrated_tta_level else 1.0

    def confidence_threshold(self, calibrated: bool = True, tta_level: int | None = None,
                             default: float = 0.5) -> float:
        """The top probability below which a prediction counts as "not confident": the one
        chosen at calibration (``calibration.json``'s ``threshold``, which kept its target
        accuracy on held-out images) when the probabilities are calibrated, else ``default``."""
        chosen = (self.calibration or {}).get("threshold")
        tta = self.tta_level if tta_level is None else tta_level
        if chosen and calibrated and tta == self.calibrated_tta_level:
            return float(chosen["threshold"])
        return default

    def probabilities(self, logits: torch.Tensor, calibrated: bool = True,
                      tta_level: int | None = None) -> torch.Tensor:
        """float32 probabilities N×C = softmax(logits / T) for logits N×C (T from
        ``temperature_for``): the one rule every caller uses."""
        return F.softmax(logits.float() / self.temperature_for(tta_level, calibrated), dim=1)


def _calibration_problem(cal) -> str | None:
    """Why ``cal`` (a parsed calibration.json) is unusable, or None when it is fine."""
    if not isinstance(cal, dict):
        return "not a JSON object"
    t, tta = cal.get("temperature"), cal.get("tta_level", 0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        return f"'temperature' must be a number > 0, got {t!r}"
    if isinstance(tta, bool) or tta not in (0, 1, 2):
        return f"'tta_level' must be 0, 1 or 2, got {tta!r}"
    return None


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a checkpoint file (or a run folder's): ties calibration.json to the
    weights it was fitted for."""
    h = hashlib.sha256()
    with open(resolve_checkpoint(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_calibration(checkpoint: Path) -> dict | None:
    """The calibration.json next to ``checkpoint``, checked (a finite temperature > 0, fitted
    for these weights), or None if absent."""
    folder = checkpoint.parent
    path = folder / CALIBRATION
    if not path.is_file():
        return None
    try:
        cal = read_json(path)
        why = _calibration_problem(cal)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        cal, why = None, f"not readable JSON ({type(e).__name__})"
    # A run trained again in the same folder keeps the old file: its temperature is stale.
    if why is None and cal.get("checkpoint_sha256") not in (None, checkpoint_digest(checkpoint)):
        why = f"it was fitted for another {checkpoint.name}; the run was trained again since"
    if why is not None:
        raise CheckpointError(f"{path} is not a valid calibration ({why}): fit it again with "
                              f"`python -m cifar_lib calibrate {folder}`, or delete the file")
    return cal


def load_run(run, device: str | torch.device = "cpu") -> LoadedModel:
    """The one way to get a usable model: a run folder or checkpoint path, a (model, ckpt) pair
    from ``load_model``, or a ``LoadedModel`` (returned as it is).

    A bare nn.Module is refused: without its checkpoint the normalisation is unknown, and a wrong
    one silently ruins every prediction. A run folder's ``calibration.json``, when present, gives
    the ``temperature`` (a broken one raises CheckpointError naming the fix).
    """
    if isinstance(run, LoadedModel):
        return run
    if isinstance(run, (str, os.PathLike)):
        from .device import select_device
        file = resolve_checkpoint(run)
        calibration = _read_calibration(file)  # before the weights: a bad file fails fast
        model, ckpt = load_model(file, select_device(device))
        lm = LoadedModel.from_checkpoint(model, ckpt, file.parent)
        if calibration is not None:
            lm.temperature, lm.calibration = float(calibration["temperature"]), calibration
        return lm
    if isinstance(run, tuple) and len(run) == 2:
        return LoadedModel.from_checkpoint(*run)
    if isinstance(run, nn.Module):
        raise TypeError("pass a run folder, load_model(run) or LoadedModel(model, classes, mean, "
                        "std): a bare model does not say how its inputs were normalised")
    raise TypeError(f"expected a run folder, (model, ckpt) or LoadedModel, "
                    f"got {type(run).__name__}")
