"""Calibrated probabilities by temperature scaling (Guo et al. 2017,
https://arxiv.org/abs/1706.04599): fit, apply and measure.

A trained network's softmax is usually mis-calibrated: of the images it gives 95 %, fewer (or
more) than 95 % are right. Dividing the logits by one scalar T changes no argmax (so accuracy is
untouched) and makes the probabilities honest. T minimises the negative log-likelihood on the
validation split (``data.split_validation``: training images the model never trained on); the
"not confident" threshold is chosen there too. The test images only measure the result.
``calibrate_run`` writes ``<run folder>/calibration.json``; ``load_run`` reads it back into
``LoadedModel.calibration``, and from then on ``predict`` and ``evaluate_run`` use
softmax(logits / T).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import CifarSplit
from .files import CheckpointError, read_json, write_json
from .inference import predict_logits

CALIBRATION = "calibration.json"

# log T is searched in [log T_MIN, log T_MAX]; real networks land between about 0.5 and 5.
T_MIN, T_MAX = 0.01, 100.0
_GOLDEN = (math.sqrt(5) - 1) / 2


def _tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError(f"expected logits N×C and labels N, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("no images to fit a temperature on: pass at least one logit row")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf: the model's outputs are broken")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{logits.shape[1] - 1}")


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean NLL of softmax(z / T), float64 numpy: on arrays this small numpy's single thread
    beats the overhead of torch's thread pool."""
    s = z / temperature
    top = s.max(1)
    log_norm = top + np.log(np.exp(s - top[:, None]).sum(1))
    return float(np.mean(log_norm - s[np.arange(len(y)), y]))


def mean_nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of softmax(logits / T): logits N×C, labels N."""
    logits, labels = _tensor(logits), _tensor(labels)
    _check_logits(logits, labels)
    return _nll(logits.double().numpy(), labels.long().numpy(), temperature)


def fit_temperature(logits, labels) -> float:
    """The T > 0 that minimises the mean NLL of softmax(logits / T). logits: N×C, labels: N.

    A golden-section search on log T in [log 0.01, log 100], in float64: deterministic, no
    learning rate to tune, and exact enough (|Δ log T| < 1e-9). It cannot miss the optimum: the
    NLL is convex in 1/T, so it has one minimum along log T. If the optimum lies outside the
    range (e.g. data the model separates perfectly want T → 0), the nearer end is returned.
    """
    logits, labels = _tensor(logits), _tensor(labels)
    _check_logits(logits, labels)
    z, y = logits.double().numpy(), labels.long().numpy()

    def nll(log_t: float) -> float:
        return _nll(z, y, math.exp(log_t))

    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-9:
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:          # the minimum is in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


@dataclass
class Calibration:
    """A fitted temperature, the confidence threshold chosen with it, and how much they helped
    (what ``calibration.json`` holds).

    temperature: T (probabilities = softmax(logits / T)); fitted_on: which images, in words;
    n_images: how many; tta_level: the TTA level of those logits (T only fits logits of that
    level). threshold: ``threshold_for_accuracy`` of the calibrated probabilities on the same
    images for ``target_accuracy`` (None when none reaches it): the "not confident" line.
    nll_*/ece_* (nats, 0..1), bins_* (``calibration_bins``), accuracy and the threshold's
    ``test_coverage``/``test_accuracy`` are measured on ``report_images`` test images, which
    chose nothing. checkpoint_sha256: the weights it belongs to.
    """
    temperature: float
    fitted_on: str = "by hand"
    n_images: int = 0
    tta_level: int = 0
    nll_before: float = float("nan")
    nll_after: float = float("nan")
    ece_before: float = float("nan")
    ece_after: float = float("nan")
    date: str = ""
    report_images: int = 0
    accuracy: float = float("nan")
    bins_before: list = field(default_factory=list)
    bins_after: list = field(default_factory=list)
    checkpoint_sha256: str | None = None
    target_accuracy: float | None = None
    threshold: dict | None = None

    # -- apply
    def temperature_for(self, tta_level: int) -> float:
        """T for logits of ``tta_level``; 1.0 for another level: averaging views shrinks the
        logits, so a T fitted on TTA-averaged logits does not fit single-view ones."""
        return self.temperature if tta_level == self.tta_level else 1.0

    def threshold_for(self, tta_level: int, default: float = 0.5) -> float:
        """The "not confident" line for calibrated probabilities of ``tta_level``."""
        if self.threshold and tta_level == self.tta_level:
            return float(self.threshold["threshold"])
        return default

    def probabilities(self, logits: torch.Tensor, tta_level: int) -> torch.Tensor:
        """float32 softmax(logits / T), N×C, for logits N×C of ``tta_level``."""
        return F.softmax(logits.float() / self.temperature_for(tta_level), dim=1)

    # -- store
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Inverse of ``to_dict``; unknown keys are ignored, a missing or bad value refused
        (ValueError)."""
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        missing = [f.name for f in fields(cls) if f.name not in d
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        t, tta = d["temperature"], d.get("tta_level", 0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                or t <= 0:
            raise ValueError(f"'temperature' must be a number > 0, got {t!r}")
        if isinstance(tta, bool) or tta not in (0, 1, 2):
            raise ValueError(f"'tta_level' must be 0, 1 or 2, got {tta!r}")
        keep_none = ("checkpoint_sha256", "target_accuracy", "threshold")  # NaN was written null
        names = {f.name for f in fields(cls)}
        return cls(**{k: (float("nan") if v is None and k not in keep_none else v)
                      for k, v in d.items() if k in names})


def read_calibration(folder: Path, checkpoint_sha256: str | None = None) -> Calibration | None:
    """``folder``'s calibration.json, checked (a finite T > 0, fitted for the weights whose
    digest is ``checkpoint_sha256``), or None if absent. CheckpointError names the fix."""
    path = Path(folder) / CALIBRATION
    if not path.is_file():
        return None
    try:
        cal, why = Calibration.from_dict(read_json(path)), None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        cal, why = None, str(e) if not type(e).__name__.endswith("DecodeError") \
            else f"not readable JSON ({type(e).__name__})"
    except OSError as e:
        cal, why = None, f"not readable ({type(e).__name__})"
    # A run trained again in the same folder keeps the old file: its temperature is stale.
    if cal is not None and cal.checkpoint_sha256 not in (None, checkpoint_sha256):
        why = "it was fitted for another checkpoint.pt; the run was trained again since"
    if why is not None:
        raise CheckpointError(f"{path} is not a valid calibration ({why}): fit it again with "
                              f"`python -m cifar_lib calibrate --run-dir {folder}`, or delete "
                              f"the file")
    return cal


# -- measure
def calibration_bins(probs, labels, n_bins: int = 15) -> list[dict]:
    """Reliability-diagram bins: confidence (the top probability) split into ``n_bins`` equal-width
    bins (lo, hi]; per bin: count, mean confidence, accuracy. probs: N×C, labels: N."""
    probs, labels = _np(probs).astype(np.float64), _np(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True gives lo < conf <= hi; conf is never 0 (it is at least 1/C).
    idx = np.clip(np.digitize(conf, edges, right=True) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
                     "confidence": float(conf[mask].mean()) if n else float("nan"),
                     "accuracy": float(correct[mask].mean()) if n else float("nan")})
    return bins


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b| over equal-width confidence bins
    (Guo et al. 2017; 15 bins as there). 0 = perfectly calibrated. probs: N×C, labels: N."""
    bins = calibration_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in bins if b["count"]))


def _report(logits: torch.Tensor, labels: torch.Tensor, temperature: float, n_bins: int
            ) -> tuple[float, float, list[dict]]:
    """(NLL, ECE, reliability bins) of softmax(logits / T) against labels."""
    probs = F.softmax(logits.double() / temperature, dim=1)
    return (mean_nll(logits, labels, temperature),
            expected_calibration_error(probs, labels, n_bins),
            calibration_bins(probs, labels, n_bins))


# The accuracy a "confident" prediction should keep: right at least 99 times in 100. A 94%
# model is that sure of most images; a 66% one rarely is, which is the honest answer.
TARGET_ACCURACY = 0.99


def calibrate_run(run, validation: CifarSplit, test: CifarSplit | None = None, *,
                  device: str = "auto", write: bool | None = None, batch_size: int = 1000,
                  n_bins: int = 15, target_accuracy: float = TARGET_ACCURACY,
                  progress: bool = True) -> Calibration:
    """Fit a run's temperature and "not confident" threshold on ``validation``; measure them on
    ``test`` when given.

    run: a run folder, checkpoint, ``load_model`` pair or ``LoadedModel``. Logits use the run's
    own TTA level. ``validation``: images the run did not train on (``data.split_validation``
    of the training set, as ``fit`` held them out). Writes ``<run folder>/calibration.json``
    when the run has a folder (``write`` None: unless the run is one the package ships; False:
    don't); the ``LoadedModel`` used (the one passed, if any) takes the new calibration either
    way. ``progress``: progress bars over the batches.

    >>> from cifar_lib import load_pretrained
    >>> from cifar_lib.data import CifarSplit
    >>> import torch
    >>> held_out = CifarSplit(torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8),
    ...                       torch.arange(50) % 10)
    >>> c = calibrate_run(load_pretrained("original"), held_out, device="cpu", write=False,
    ...                   progress=False)
    >>> c.temperature > 0, c.n_images
    (True, 50)
    """
    from .checkpoint import (  # checkpoint.py imports this module
        checkpoint_digest,
        load_run,
    )
    lm = load_run(run, device, calibrated=False)  # fitted afresh: the old one is not read

    def logits_of(split: CifarSplit, label: str) -> torch.Tensor:
        return predict_logits(lm.model, split.images, lm.mean, lm.std, tta_level=lm.tta_level,
                              batch_size=batch_size, progress=label if progress else None)

    z_val, y_val = logits_of(validation, "calibrate"), validation.labels.long()
    t = fit_temperature(z_val, y_val)
    try:
        threshold = threshold_for_accuracy(F.softmax(z_val.double() / t, dim=1), y_val,
                                           target_accuracy)
    except ValueError:  # e.g. a weak model that is never right 99 times in 100
        threshold = None
    cal = Calibration(
        temperature=t, n_images=len(validation), tta_level=lm.tta_level,
        fitted_on=f"the validation split ({len(validation):,} held-out training images)",
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        checkpoint_sha256=checkpoint_digest(lm.folder) if lm.folder is not None else None,
        target_accuracy=target_accuracy, threshold=threshold)
    if test is not None:
        z, y = logits_of(test, "measure on test"), test.labels.long()
        cal.nll_before, cal.ece_before, cal.bins_before = _report(z, y, 1.0, n_bins)
        cal.nll_after, cal.ece_after, cal.bins_after = _report(z, y, t, n_bins)
        cal.report_images = len(test)
        cal.accuracy = (z.argmax(1) == y).double().mean().item()
        if threshold is not None:  # what the threshold chosen on validation does on test
            conf = F.softmax(z.double() / t, dim=1).max(1).values
            kept = conf >= threshold["threshold"]
            threshold["test_coverage"] = kept.double().mean().item()
            threshold["test_accuracy"] = ((z.argmax(1) == y)[kept].double().mean().item()
                                          if kept.any() else float("nan"))
    lm.calibration = cal
    from .pretrained import is_shipped  # here: pretrained imports checkpoint, which imports us
    if lm.folder is not None and (not is_shipped(lm.folder) if write is None else write):
        write_json(lm.folder / CALIBRATION, cal.to_dict())
    return cal


def describe_calibration(lm, tta_level: int | None = None, calibrated: bool = True) -> str:
    """One line saying whether ``lm``'s (a ``LoadedModel``) probabilities at ``tta_level``
    (None: the run's own) are calibrated, and how to calibrate them when they are not."""
    run = lm.folder if lm.folder is not None else "RUN"
    fix = f"run `python -m cifar_lib calibrate --run-dir {run}` first"
    if not calibrated:
        return "uncalibrated probabilities (asked for): plain softmax of the logits"
    if lm.calibration is None:
        return f"uncalibrated: {fix}"
    tta = lm.tta_level if tta_level is None else tta_level
    if tta != lm.calibration.tta_level:
        return (f"uncalibrated: the temperature was fitted on TTA level "
                f"{lm.calibration.tta_level} logits, these are level {tta}")
    return (f"probabilities calibrated with temperature T={lm.temperature:.2f}, fitted on "
            f"{lm.calibration.fitted_on}")


def threshold_for_accuracy(probs, labels, target: float) -> dict:
    """The smallest confidence threshold t such that the predictions with top probability ≥ t
    are right at least a ``target`` fraction of the time.

    probs: N×C (rows sum to 1), labels: N. t is one of the observed top probabilities; returns
    {'threshold': t, 'coverage': fraction of predictions kept (0..1), 'accuracy': their
    accuracy}, measured on the images it was chosen on: choose on the validation split. ValueError when no threshold reaches ``target``.
    """
    probs, labels = _tensor(probs), _tensor(labels)
    if not 0 < target <= 1:
        raise ValueError(f"target accuracy must be in (0, 1], got {target}")
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"expected probabilities N×C and labels N with N > 0, got "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")
    conf, pred = probs.double().max(1)
    order = conf.argsort(descending=True, stable=True)
    conf, correct = conf[order], (pred[order] == labels[order].long()).double()
    acc_top_k = correct.cumsum(0) / torch.arange(1, len(conf) + 1)  # accuracy of the k most sure
    # Keeping conf ≥ t keeps every tied prediction, so only the last of each tie is a choice.
    last_of_tie = torch.ones_like(conf, dtype=torch.bool)
    last_of_tie[:-1] = conf[1:] < conf[:-1]
    ok = torch.nonzero(last_of_tie & (acc_top_k >= target - 1e-12)).flatten()
    if len(ok) == 0:
        best = acc_top_k[last_of_tie].max().item()
        raise ValueError(f"no confidence threshold reaches accuracy {target:.1%}: the best any "
                         f"threshold gives is {best:.1%}; ask for a lower target")
    k = ok[-1].item()  # the most predictions kept ⇔ the smallest threshold
    return {"threshold": conf[k].item(), "coverage": (k + 1) / len(conf),
            "accuracy": acc_top_k[k].item()}
