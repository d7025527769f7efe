"""Checkpoints and run folders.

A run folder (e.g. ``runs/fast``) holds ``checkpoint.pt`` (weights, the config that rebuilds the
model, class names, normalisation, and the training state needed to resume), ``metrics.json``
(the final results), ``history.json`` (one row per epoch) and, once ``python -m cifar_lib
calibrate`` has run, ``calibration.json`` (``cifar_lib.calibration``). Files are written
atomically (``cifar_lib.files``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import Calibration, read_calibration
from .data import CLASSES
from .files import CheckpointError, atomic_write, json_safe, read_json, write_json  # noqa: F401
from .models import build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
HISTORY = "history.json"
FORMAT = 1


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
    atomic_write(Path(path), lambda f: torch.save(payload, f))


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
                              f"({ckpt['model_kwargs']}), not {model_name!r}: use the recipe "
                              f"or model it was trained with (command line: --recipe, --model), "
                              f"or load_model(), which reads it")
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    own = unwrap(model).state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or misshapen:
        first = (missing or unexpected or misshapen)[0]
        raise CheckpointError(
            f"checkpoint does not fit the model it names ({ckpt['model']} {ckpt['model_kwargs']}):"
            f" {len(missing)} weights missing, {len(unexpected)} unexpected, {len(misshapen)} of "
            f"another shape (first: {first!r}); the file was changed or mixed with another run's: "
            f"use the checkpoint.pt that its run wrote")
    unwrap(model).load_state_dict(state)


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
    """A model with what it needs to be used: class names, normalisation, its TTA level, where
    it came from (``folder``: the run folder, None when built in memory), and its
    ``calibration`` (the fitted temperature and confidence threshold; None: uncalibrated).

    ``model`` maps float N×3×32×32 images, scaled to [0, 1] and then normalised with ``mean``
    and ``std``, to logits N×len(classes) (``inference.predict_logits`` does that from uint8
    images). ``name``: the architecture ("airbench", "simple_cnn"); ``config``: the training
    settings (``TrainConfig.to_dict()``).
    """
    model: nn.Module
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tta_level: int = 0
    name: str = ""
    config: dict = field(default_factory=dict)
    folder: Path | None = None
    calibration: Calibration | None = None

    @classmethod
    def from_checkpoint(cls, model: nn.Module, ckpt: dict, folder: Path | None = None
                        ) -> "LoadedModel":
        return cls(model.eval(), tuple(ckpt.get("classes", CLASSES)), tuple(ckpt["mean"]),
                   tuple(ckpt["std"]), int(ckpt.get("config", {}).get("tta_level", 0)),
                   ckpt["model"], dict(ckpt.get("config", {})), folder)

    @property
    def temperature(self) -> float:
        """The fitted temperature T (1.0: uncalibrated)."""
        return self.calibration.temperature if self.calibration else 1.0

    def temperature_for(self, tta_level: int | None = None, calibrated: bool = True) -> float:
        """The T to divide logits of ``tta_level`` (None: the run's own) by; see
        ``Calibration.temperature_for``."""
        tta = self.tta_level if tta_level is None else tta_level
        return self.calibration.temperature_for(tta) if calibrated and self.calibration else 1.0

    def confidence_threshold(self, calibrated: bool = True, tta_level: int | None = None,
                             default: float = 0.5) -> float:
        """The top probability below which a prediction counts as "not confident": the one
        chosen at calibration when the probabilities are calibrated, else ``default``."""
        tta = self.tta_level if tta_level is None else tta_level
        if calibrated and self.calibration:
            return self.calibration.threshold_for(tta, default)
        return default

    def probabilities(self, logits: torch.Tensor, calibrated: bool = True,
                      tta_level: int | None = None) -> torch.Tensor:
        """float32 probabilities N×C = softmax(logits / T) for logits N×C: the one rule every
        caller uses."""
        return F.softmax(logits.float() / self.temperature_for(tta_level, calibrated), dim=1)


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a checkpoint file (or a run folder's): ties calibration.json to the
    weights it was fitted for."""
    h = hashlib.sha256()
    with open(resolve_checkpoint(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_run(run, device: str | torch.device = "cpu", *, calibrated: bool = True
             ) -> LoadedModel:
    """The one way to get a usable model: a run folder or checkpoint path, a (model, ckpt) pair
    from ``load_model``, or a ``LoadedModel`` (returned as it is).

    A bare nn.Module is refused: without its checkpoint the normalisation is unknown, and a wrong
    one silently ruins every prediction. A run folder's ``calibration.json``, when present, gives
    its ``calibration`` (a broken one raises CheckpointError naming the fix); ``calibrated=False``
    leaves it unread, for plain softmax probabilities. ``device`` applies to a run read from a
    path; a ``LoadedModel`` or pair is returned on the device its model is on (never moved).
    """
    if isinstance(run, LoadedModel):
        return run
    if isinstance(run, (str, os.PathLike)):
        from .device import select_device
        file = resolve_checkpoint(run)
        # the weights first: a damaged checkpoint is the error to report, not the calibration
        # fitted for its earlier bytes
        model, ckpt = load_model(file, select_device(device))
        lm = LoadedModel.from_checkpoint(model, ckpt, file.parent)
        if calibrated:
            lm.calibration = read_calibration(file.parent, checkpoint_digest(file))
        return lm
    if isinstance(run, tuple) and len(run) == 2:
        return LoadedModel.from_checkpoint(*run)
    if isinstance(run, nn.Module):
        raise TypeError("pass a run folder, load_model(run) or LoadedModel(model, classes, mean, "
                        "std): a bare model does not say how its inputs were normalised")
    raise TypeError(f"expected a run folder, (model, ckpt) or LoadedModel, "
                    f"got {type(run).__name__}")
