"""Calibrated probabilities by temperature scaling (Guo et al. 2017).

A trained network's softmax is usually over-confident: of the images it gives 95 %, fewer than
95 % are right. Dividing the logits by one scalar T > 1 softens every prediction without
changing any argmax (so accuracy is untouched). T is the value that minimises the negative
log-likelihood on held-out images.

Which images: CIFAR-10 has no validation split, so ``calibration_split`` cuts the test set at
random into two disjoint halves. T is fitted on half A only; every number reported about the
calibration (NLL, ECE before/after) is measured on half B only, images T has never seen.
``calibrate_run`` writes the result to ``<run folder>/calibration.json``, which ``load_run``
reads back: from then on ``predict`` and ``evaluate_run`` use softmax(logits / T).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CALIBRATION, LoadedModel, checkpoint_digest, load_run, write_json
from .data import CifarSplit
from .evaluation import calibration_bins, expected_calibration_error
from .inference import predict_logits

# log T is searched in [log T_MIN, log T_MAX]; real networks land between about 0.5 and 5.
T_MIN, T_MAX = 0.01, 100.0
_GOLDEN = (math.sqrt(5) - 1) / 2


def _tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


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
    """Mean NLL of softmax(z / T), float64 numpy. Small arrays: numpy's single thread beats
    torch's thread pool here, which on a busy 2-core machine costs ~10× per call."""
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


def _split_indices(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sorted index tensors (half A: n // 2, half B: the rest) from a seeded
    random permutation of range(n)."""
    if n < 2:
        raise ValueError(f"need at least 2 test images to split in two halves, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n // 2].sort().values, perm[n // 2:].sort().values


def calibration_split(test: CifarSplit, seed: int = 0) -> tuple[CifarSplit, CifarSplit]:
    """(fit half, report half): the test set cut in two disjoint halves by a random
    permutation seeded with ``seed`` (same seed, same halves; each half keeps the test order).

    Fit the temperature on the fit half only and report its metrics on the report half only:
    numbers measured on the images T was fitted on would flatter it.
    """
    a, b = _split_indices(len(test), seed)
    return (CifarSplit(test.images[a], test.labels[a], test.classes),
            CifarSplit(test.images[b], test.labels[b], test.classes))


@dataclass
class Calibration:
    """A fitted temperature and how much it helped (what ``calibration.json`` holds).

    temperature: T (probabilities = softmax(logits / T)); fitted_on: which images, in words;
    n_images: how many images T was fitted on; tta_level: the TTA level of those logits (T only
    fits logits of that level). nll_*/ece_* (nats, 0..1) and bins_* (``calibration_bins``) are
    measured on the *report* half (report_images images), before and after scaling; accuracy
    (the same before and after) on that half too. checkpoint_sha256: the weights it belongs to.
    threshold: ``threshold_for_accuracy`` of the calibrated probabilities on the report half for
    ``target_accuracy`` (None when no threshold reaches it): the "not confident" line that
    ``predict`` uses by default.
    """
    temperature: float
    fitted_on: str
    n_images: int
    tta_level: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    date: str
    seed: int = 0
    report_images: int = 0
    accuracy: float = float("nan")
    bins_before: list = field(default_factory=list)
    bins_after: list = field(default_factory=list)
    checkpoint_sha256: str | None = None
    target_accuracy: float | None = None
    threshold: dict | None = None   # threshold_for_accuracy on the report half, calibrated

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        """Inverse of ``to_dict``; unknown keys are ignored, missing required ones refused."""
        names = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"not a calibration: missing {', '.join(missing)}; fit one with "
                             f"`python -m cifar_lib calibrate RUN`")
        # json_safe wrote NaN as null
        keep_none = ("checkpoint_sha256", "target_accuracy", "threshold")
        return cls(**{k: (float("nan") if v is None and k not in keep_none else v)
                      for k, v in d.items() if k in names})


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


def calibrate_run(run, test: CifarSplit, *, seed: int = 0, device: str = "auto",
                  write: bool = True, batch_size: int = 1000, n_bins: int = 15,
                  target_accuracy: float = TARGET_ACCURACY) -> Calibration:
    """Fit a run's temperature on half A of ``test`` and measure it on half B.

    run: a run folder, checkpoint, ``load_model`` pair or ``LoadedModel``. Logits use the run's
    own TTA level. ``calibration_split(test, seed)`` gives the halves: T is fitted on the fit
    half, NLL/ECE before and after are measured on the report half. Writes
    ``<run folder>/calibration.json`` when ``write`` and the run has a folder; the
    ``LoadedModel`` used (the one passed, if any) takes the new temperature either way.
    The confidence threshold for ``target_accuracy`` is chosen on the report half too.
    """
    lm = load_run(run, device)
    logits = predict_logits(lm.model, test.images, lm.mean, lm.std, tta_level=lm.tta_level,
                            batch_size=batch_size)
    labels = test.labels.long()
    fit, rep = _split_indices(len(test), seed)  # the same halves as calibration_split
    t = fit_temperature(logits[fit], labels[fit])
    nll_b, ece_b, bins_b = _report(logits[rep], labels[rep], 1.0, n_bins)
    nll_a, ece_a, bins_a = _report(logits[rep], labels[rep], t, n_bins)
    digest = checkpoint_digest(lm.folder) if lm.folder is not None else None
    calibrated = F.softmax(logits[rep].double() / t, dim=1)
    try:
        threshold = threshold_for_accuracy(calibrated, labels[rep], target_accuracy)
    except ValueError:  # e.g. a weak model that is never right 99 times in 100
        threshold = None
    cal = Calibration(
        temperature=t, n_images=len(fit), tta_level=lm.tta_level,
        fitted_on=f"half A of the test set ({len(fit):,} of {len(test):,} images, seed {seed})",
        nll_before=nll_b, nll_after=nll_a, ece_before=ece_b, ece_after=ece_a,
        date=datetime.datetime.now().isoformat(timespec="seconds"), seed=seed,
        report_images=len(rep),
        accuracy=(logits[rep].argmax(1) == labels[rep]).double().mean().item(),
        bins_before=bins_b, bins_after=bins_a, checkpoint_sha256=digest,
        target_accuracy=target_accuracy, threshold=threshold)
    lm.temperature, lm.calibration = t, cal.to_dict()
    if write and lm.folder is not None:
        write_json(lm.folder / CALIBRATION, cal.to_dict())
    return cal


def describe_calibration(lm: LoadedModel, tta_level: int | None = None,
                         calibrated: bool = True) -> str:
    """One line saying whether ``lm``'s probabilities (at ``tta_level``, None: the run's own)
    are calibrated, and how to calibrate them when they are not."""
    run = lm.folder if lm.folder is not None else "RUN"
    fix = f"run `python -m cifar_lib calibrate {run}` first"
    if not calibrated:
        return "uncalibrated probabilities (asked for): plain softmax of the logits"
    if lm.calibration is None and lm.temperature == 1.0:
        return f"uncalibrated: {fix}"
    tta = lm.tta_level if tta_level is None else tta_level
    if tta != lm.calibrated_tta_level:
        return (f"uncalibrated: the temperature was fitted on TTA level "
                f"{lm.calibrated_tta_level} logits, these are level {tta}")
    where = (lm.calibration or {}).get("fitted_on")
    return (f"probabilities calibrated with temperature T={lm.temperature:.2f}"
            + (f", fitted on {where}" if where else ""))


def threshold_for_accuracy(probs, labels, target: float) -> dict:
    """The smallest confidence threshold t such that the predictions with top probability ≥ t
    are right at least a ``target`` fraction of the time.

    probs: N×C (rows sum to 1), labels: N. t is one of the observed top probabilities; returns
    {'threshold': t, 'coverage': fraction of predictions kept (0..1), 'accuracy': their
    accuracy}. Measured on the same images it was chosen on, so use held-out images (e.g. the
    report half) and calibrated probabilities. ValueError when no threshold reaches ``target``.
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
