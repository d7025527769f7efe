"""A trained run as one self-contained file that runs without ``cifar_lib``.

    python -m cifar_lib export --run-dir RUN --out model.pt2             # torch.export program
    python -m cifar_lib export --run-dir RUN --out model.onnx            # ONNX (the export extra)

What is exported is ``RawImageClassifier``: raw RGB images in [0, 1], float32 N×3×32×32 in,
logits N×C out. The normalisation the model was trained with is inside it, so a user needs
nothing but the file: neither this library nor the run's mean and std. It is the plain model,
without the run's test-time augmentation or temperature (``softmax(logits / T)`` with the
run's T gives calibrated probabilities; the file's metadata holds the T that fits these
single-view logits, 1.0 when the run was calibrated on test-time-augmented ones).

Load a ``.pt2`` with ``torch.export.load(path).module()``; its class names are in the extra file
``cifar_lib.json`` (``read_metadata``). An ``.onnx`` file holds them in its metadata properties
(key ``cifar_lib``), and onnxruntime runs it: input ``images``, output ``logits``.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from torch import nn

from .batches import channel_stats
from .checkpoint import load_run
from .errors import UsageError

FORMATS = ("pt2", "onnx")
METADATA = "cifar_lib.json"     # the extra file (pt2) / metadata key (onnx) with class names
INPUT, OUTPUT = "images", "logits"
MAX_BATCH = 65536               # the largest batch the exported program accepts


class ExportError(RuntimeError):
    """An export that cannot be made here (e.g. ONNX without its packages); the message names
    the fix."""


class RawImageClassifier(nn.Module):
    """A classifier for raw images: float32 N×3×H×W in [0, 1] (RGB) → logits N×C (float32).

    Normalises with the run's ``mean``/``std`` (3 numbers each) inside, then calls ``model``.
    ``classes``: the C class names, in the order of the logits.
    """

    def __init__(self, model: nn.Module, mean, std, classes, temperature: float = 1.0):
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", channel_stats(mean))
        self.register_buffer("std", channel_stats(std))
        self.classes = tuple(classes)
        # softmax(logits / temperature): calibrated probabilities for these single-view logits
        self.temperature = float(temperature)
        self.normalization = (tuple(mean), tuple(std))  # as trained, for the metadata

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def wrap(run, device: str | torch.device = "cpu") -> RawImageClassifier:
    """``run`` (a run folder, checkpoint or ``LoadedModel``) as a ``RawImageClassifier``."""
    lm = load_run(run, device)
    # A temperature fitted on TTA-averaged logits does not fit the plain model's: 1.0 then.
    wrapped = RawImageClassifier(lm.model, lm.mean, lm.std, lm.classes,
                                 lm.temperature_for(tta_level=0))
    return wrapped.to(next(lm.model.parameters()).device).eval()


def metadata(wrapped: RawImageClassifier) -> dict:
    """What a user of the exported file needs besides the graph: classes, input, temperature."""
    from . import __version__
    return {"classes": list(wrapped.classes), "input": "float32 N×3×32×32 RGB in [0, 1]",
            "output": "logits N×C", "temperature": wrapped.temperature,
            "mean": list(wrapped.normalization[0]), "std": list(wrapped.normalization[1]),
            "cifar_lib": __version__}


def export_program(wrapped: RawImageClassifier, size: int = 32) -> torch.export.ExportedProgram:
    """``torch.export`` of ``wrapped`` for float32 N×3×size×size inputs, any N in 1..MAX_BATCH."""
    # An example batch of 2: a batch of 1 would let the exporter specialise on size 1.
    example = torch.rand(2, 3, size, size, device=wrapped.mean.device)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(wrapped, (example,), dynamic_shapes={INPUT: {0: batch}})


def format_of(out: str | os.PathLike, format: str | None = None) -> str:
    """``format`` when given, else from ``out``'s suffix (.pt2 or .onnx)."""
    if format is None:
        format = Path(out).suffix.lstrip(".").lower()
        if format not in FORMATS:
            raise UsageError(f"cannot tell the format from {str(out)!r}: name the file .pt2 or "
                             f".onnx, or pass --format {'|'.join(FORMATS)}")
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    return format


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: "
                          f"pip install onnx onnxscript onnxruntime (the export extra)")


def export_run(run, out: str | os.PathLike, format: str | None = None) -> Path:
    """Export ``run`` (run folder, checkpoint or ``LoadedModel``) to ``out``; returns the path.

    ``format``: "pt2" (``torch.export.save``) or "onnx" (``torch.onnx.export``); None: from the
    suffix of ``out``. The model is exported on the CPU, in float32, for any batch size.
    """
    format = format_of(out, format)
    if format == "onnx":
        _require_onnx()  # before the model is loaded: a missing package fails at once
    wrapped = wrap(run, "cpu")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = json.dumps(metadata(wrapped))
    program = export_program(wrapped)
    if format == "pt2":
        torch.export.save(program, out, extra_files={METADATA: info})
        return out
    import onnx
    onnx_program = torch.onnx.export(program, input_names=[INPUT], output_names=[OUTPUT],
                                     dynamo=True, verbose=False)
    onnx_program.save(str(out))
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, {METADATA: info})
    onnx.save(proto, str(out))
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata (class names, temperature, ...) saved with an exported ``.pt2`` or ``.onnx``."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
                 .metadata_props}
        return json.loads(props[METADATA])
    extra = {METADATA: ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra[METADATA])
