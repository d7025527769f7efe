"""Metrics beyond one accuracy number: uncertainty, per class, confusions, mistakes.

Everything here works on plain arrays (probabilities N×C, labels N), so it is testable on tiny
hand-made examples; ``evaluate_run`` ties it to a run folder and writes ``evaluation.json``.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np
import torch

from .calibration import calibration_bins, expected_calibration_error
from .checkpoint import METRICS, load_run
from .data import CifarSplit
from .errors import UsageError
from .files import json_safe, read_json, write_json
from .inference import predict_logits
from .models import count_parameters
from .pretrained import is_shipped

EVALUATION = "evaluation.json"


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) for a proportion ``correct``/``total``.

    Better than p ± z·sqrt(p(1−p)/n) near 0 or 1 and for small n (it never leaves [0, 1]).
    For 10,000 test images at 90 % it is about ±0.6 points: smaller differences between two
    runs are within noise.
    """
    if total <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion_matrix(labels, predictions, num_classes: int = 10) -> np.ndarray:
    """int64 C×C counts: row = true class, column = predicted class."""
    y, p = _np(labels).astype(np.int64), _np(predictions).astype(np.int64)
    return np.bincount(y * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def row_normalize(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the fraction of a true class given each prediction);
    rows with no examples stay zero."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def per_class_metrics(cm: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """One dict per class: support, correct, accuracy, precision, recall, f1.

    accuracy of a class = recall = correct / images of that class; precision = correct /
    images predicted as that class (NaN when the class was never predicted).
    """
    cm = np.asarray(cm)
    rows = []
    for i, name in enumerate(classes):
        tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        recall = tp / support if support else float("nan")
        precision = tp / predicted if predicted else float("nan")
        f1 = (2 * precision * recall / (precision + recall)
              if precision + recall > 0 else (0.0 if support else float("nan")))
        rows.append({"class": name, "support": support, "predicted": predicted, "correct": tp,
                     "accuracy": recall, "precision": precision, "recall": recall, "f1": f1})
    return rows


def most_confused_pairs(cm: np.ndarray, classes: Sequence[str], k: int = 10
                        ) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as (true class, predicted class, count), largest first;
    ties keep row-major order, zero cells are left out."""
    cm = np.asarray(cm)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm))
             if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: -c[0])  # stable: ties stay in row-major order
    return [(classes[i], classes[j], n) for n, i, j in cells[:k]]


def confident_mistakes(probs, labels, classes: Sequence[str], k: int = 16) -> list[dict]:
    """The ``k`` wrong predictions with the highest confidence, most confident first:
    dicts with index (into the split), true, predicted (names) and confidence (0..1)."""
    probs, labels = _np(probs), _np(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    return [{"index": int(i), "true": classes[int(labels[i])], "predicted": classes[int(pred[i])],
             "confidence": float(conf[i])} for i in order]


@dataclass
class EvaluationReport:
    """Everything ``evaluate_predictions`` computes. Arrays: probs N×C float32, labels and
    predictions N int64, confusion C×C int64 (rows true, columns predicted)."""
    classes: tuple[str, ...]
    probs: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    accuracy: float
    ci: tuple[float, float]          # 95 % Wilson interval of the accuracy
    nll: float                       # mean negative log-likelihood (cross-entropy), nats
    per_class: list[dict]
    confusion: np.ndarray
    most_confused: list[tuple[str, str, int]]
    ece: float
    reliability_bins: list[dict]     # calibration_bins: confidence bins, their accuracy
    mistakes: list[dict]
    info: dict = field(default_factory=dict)  # run, model, tta_level, date ...

    @property
    def n(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        """JSON-ready summary (no N-sized arrays; NaN → None)."""
        d = {**self.info, "test_images": self.n, "accuracy": self.accuracy,
             "ci95": list(self.ci), "nll": self.nll, "ece": self.ece,
             "classes": list(self.classes), "per_class": self.per_class,
             "confusion": self.confusion.tolist(),
             "most_confused": [list(t) for t in self.most_confused],
             "reliability_bins": self.reliability_bins, "mistakes": self.mistakes}
        return json_safe(d)


def evaluate_predictions(probs, labels, classes: Sequence[str], *, n_bins: int = 15,
                         n_mistakes: int = 32, n_pairs: int = 10, info: dict | None = None
                         ) -> EvaluationReport:
    """All metrics from probabilities N×C (rows sum to 1) and integer labels N."""
    probs = _np(probs).astype(np.float32)
    labels = _np(labels).astype(np.int64)
    if len(labels) != len(probs):
        raise UsageError(f"expected one label per prediction ({len(probs)}), got {len(labels)}")
    if len(labels) and not (labels.min() >= 0 and labels.max() < len(classes)):
        raise UsageError(f"labels must be class indices 0–{len(classes) - 1}, got values from "
                         f"{labels.min()} to {labels.max()}")
    preds = probs.argmax(1)
    correct = int((preds == labels).sum())
    cm = confusion_matrix(labels, preds, len(classes))
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    nll = float(-np.log(np.clip(picked, 1e-12, None)).mean()) if len(labels) else float("nan")
    return EvaluationReport(
        classes=tuple(classes), probs=probs, labels=labels, predictions=preds,
        accuracy=correct / len(labels) if len(labels) else float("nan"),
        ci=wilson_interval(correct, len(labels)), nll=nll,
        per_class=per_class_metrics(cm, classes), confusion=cm,
        most_confused=most_confused_pairs(cm, classes, n_pairs),
        ece=expected_calibration_error(probs, labels, n_bins),
        reliability_bins=calibration_bins(probs, labels, n_bins),
        mistakes=confident_mistakes(probs, labels, classes, n_mistakes), info=dict(info or {}))


def evaluate_run(run, test_split: CifarSplit, tta_level: int | None = None, *,
                 device: str = "auto", batch_size: int = 1000, n_bins: int = 15,
                 write: bool | None = None, json_name: str = EVALUATION, calibrated: bool = True,
                 progress: bool = True) -> EvaluationReport:
    """Evaluate a run (folder, checkpoint, ``load_model`` pair or ``LoadedModel``) on
    ``test_split`` (uint8 N×3×32×32 + labels): the one evaluation path of the course.

    ``tta_level`` None uses the run's own setting (``config['tta_level']``). ``calibrated``: use
    the run's fitted temperature (``LoadedModel.probabilities``; the argmax and so the accuracy
    do not change). The temperature was fitted on the validation split, never on test images.
    ``info`` records ``temperature`` (1.0: none) and ``calibrated``. Writes the report's
    summary to ``<run folder>/evaluation.json`` (``write`` None: unless the run is one the package
    ships; False: don't; ``json_name``: another file, e.g. to keep the TTA and no-TTA results
    side by side). ``progress``: a progress bar over the batches. ``device``: where a run read
    from a path is loaded; a ``LoadedModel`` or ``load_model`` pair runs where its model is.

    >>> from cifar_lib import load_pretrained
    >>> from cifar_lib.data import CifarSplit
    >>> import torch
    >>> images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    >>> report = evaluate_run(load_pretrained("original"), CifarSplit(images, torch.arange(20) % 10),
    ...                       device="cpu", write=False, progress=False)
    >>> report.n, report.confusion.shape
    (20, (10, 10))
    """
    lm = load_run(run, device, calibrated=calibrated)
    tta = lm.tta_level if tta_level is None else tta_level
    logits = predict_logits(lm.model, test_split.images, lm.mean, lm.std, tta_level=tta,
                            batch_size=batch_size, progress="evaluate" if progress else None)
    temperature = lm.temperature_for(tta, calibrated)
    probs = lm.probabilities(logits, calibrated, tta)
    info = {"run": str(lm.folder) if lm.folder else None, "model": lm.name, "tta_level": tta,
            "temperature": temperature, "calibrated": temperature != 1.0,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    report = evaluate_predictions(probs, test_split.labels, lm.classes, n_bins=n_bins, info=info)
    if lm.folder is not None and (not is_shipped(lm.folder) if write is None else write):
        write_json(lm.folder / json_name, report.to_dict())
    return report


def compare_runs(runs: Sequence, test_split: CifarSplit,
                 tta_levels: Sequence[int | None] = (0, None), *, device: str = "auto",
                 batch_size: int = 1000, n_bins: int = 15, calibrated: bool = True
                 ) -> list[dict]:
    """One row per (run, TTA level) for a side-by-side table (``pandas.DataFrame(rows)``).

    ``tta_levels``: None means the run's own level; duplicates per run are dropped, so the
    default (0, None) gives "without TTA" and, where the run uses TTA, "with TTA".
    ``calibrated``: each run's fitted temperature where it has one for that TTA level.
    Columns: run, model, parameters, epochs, train_seconds, tta_level, temperature (1.0:
    uncalibrated), test_images, accuracy, ci_low, ci_high, nll, ece. Nothing is written into the
    run folders.
    """
    rows = []
    for run in runs:
        lm = load_run(run, device)
        metrics_path = lm.folder / METRICS if lm.folder else None
        metrics = read_json(metrics_path) if metrics_path and metrics_path.is_file() else {}
        levels = list(dict.fromkeys(lm.tta_level if t is None else t for t in tta_levels))
        for tta in levels:
            r = evaluate_run(lm, test_split, tta, batch_size=batch_size, n_bins=n_bins,
                             write=False, calibrated=calibrated)
            rows.append({"run": lm.folder.name if lm.folder else str(run), "model": lm.name,
                         "parameters": count_parameters(lm.model),
                         "epochs": metrics.get("epochs", lm.config.get("epochs")),
                         "train_seconds": metrics.get("train_seconds"), "tta_level": tta,
                         "temperature": r.info["temperature"],
                         "test_images": r.n, "accuracy": r.accuracy, "ci_low": r.ci[0],
                         "ci_high": r.ci[1], "nll": r.nll, "ece": r.ece})
    return rows
