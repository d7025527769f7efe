"""Classify your own photos with a trained run: top-k classes, probabilities, a confidence flag.

A CIFAR-10 network always answers with one of its ten classes, even for a giraffe. The softmax
probability of the top class is a weak but useful signal of "I am not sure": below
``threshold`` the prediction is flagged ``confident=False``. (It is not an out-of-distribution
detector: a network can be confidently wrong about things it has never seen.) The probabilities
are calibrated with the run's temperature when it has one (``python -m cifar_lib calibrate``),
so that "80 %" means right about 80 % of the time on CIFAR-10-like images.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from PIL import Image

from .checkpoint import load_run
from .images import (METHODS, ImageError, Source, _check_method, load_image, model_views,
                     source_name)
from .inference import predict_logits


# How a photo becomes 32×32 by default: the whole photo squashed to a square, as the seed
# notebook did. Measured on the sample photos with their known classes (``compare_methods``,
# lesson 04_real_images): squash gave the true class the highest mean log-probability for both
# shipped models, ahead of the centred square and of averaging six crops. Few photos: a
# measurement to repeat on your own (``compare_methods`` with your labelled photos).
PHOTO_METHOD = "squash"


@dataclass
class Prediction:
    """One photo's result. top_k: [(class name, probability)], most probable first;
    probs: float32 tensor C (sums to 1); image: the loaded RGB photo; input: uint8 3×32×32
    (what the network saw; V×3×32×32, the views, for 'multi_crop'); temperature: the T the logits were divided by (1.0 = uncalibrated).
    For a file that failed to load (``errors="report"``), ``error`` holds the message and
    everything else is empty."""
    name: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    confident: bool = False
    probs: torch.Tensor | None = None
    image: Image.Image | None = None
    input: torch.Tensor | None = None
    error: str | None = None
    temperature: float = 1.0
    # "None of these" from the run's detector (cifar_lib.ood; None: the run has none):
    # True when the photo's score is below the detector's threshold.
    none_of_these: bool | None = None
    ood_score: float | None = None

    @property
    def label(self) -> str | None:
        """The top class name (None for a failed file)."""
        return self.top_k[0][0] if self.top_k else None

    @property
    def probability(self) -> float | None:
        return self.top_k[0][1] if self.top_k else None

    def summary(self) -> str:
        """e.g. ``dog 81.2%, cat 9.0%, deer 3.1%`` (+ ``(not confident)``), or the error."""
        if self.error:
            return f"error: {self.error}"
        ranked = ", ".join(f"{c} {p:.1%}" for c, p in self.top_k)
        return (ranked + ("" if self.confident else "  (not confident)")
                + ("  (none of these?)" if self.none_of_these else ""))

    def __str__(self) -> str:
        return f"{self.name}: {self.summary()}"


def _is_batch(images) -> bool:
    return isinstance(images, (list, tuple)) or (
        not isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image))
        and hasattr(images, "__iter__") and not hasattr(images, "read"))


def predict(model_or_run, images: Source | Sequence[Source], *, top_k: int = 3,
            threshold: float | None = None, method: str = PHOTO_METHOD, tta_level: int | None = None,
            device: str | torch.device = "cpu", errors: str = "raise", calibrated: bool = True):
    """Classify one photo (returns a ``Prediction``) or a list of photos (returns a list).

    images: paths, bytes (e.g. ``Upload``), open files or PIL images. Each is loaded with
    ``load_image`` and reduced to 32×32 views by ``method`` (``images.model_views``: 'squash',
    the default, chosen by measurement (see ``PHOTO_METHOD``); 'center_crop'; or 'multi_crop',
    six crops whose probabilities are averaged), normalised with the checkpoint's mean/std and
    run through the model (with the run's TTA unless ``tta_level`` says otherwise). The probabilities are softmax(logits / T) with the run's
    temperature when ``calibrated`` and it has one for that TTA level (``Prediction.temperature``
    says which T). ``confident`` is True when the top probability ≥ ``threshold`` (None: the
    run's calibrated threshold, chosen to keep 99% accuracy on held-out images, see
    ``LoadedModel.confidence_threshold``; 0.5 for an uncalibrated run).
    errors: 'raise' (an unusable image raises ImageError) or 'report' (its Prediction carries
    ``error`` and the other photos are still classified).
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    _check_method(method)
    single = not _is_batch(images)
    sources = [images] if single else list(images)
    lm = load_run(model_or_run, device)
    k = max(1, min(top_k, len(lm.classes)))
    results: list[Prediction] = []
    for src in sources:
        name = source_name(src)
        try:
            img = load_image(src)
            results.append(Prediction(name=name, image=img, input=model_views(img, 32, method)))
        except ImageError as e:
            if errors == "raise":
                raise
            results.append(Prediction(name=name, error=str(e)))
    ok = [r for r in results if r.error is None]
    if ok:
        tta = lm.tta_level if tta_level is None else tta_level
        probs = photo_probabilities(lm, [r.input for r in ok], tta_level=tta,
                                    calibrated=calibrated)                # B×C
        temperature = lm.temperature_for(tta, calibrated)
        if threshold is None:
            threshold = lm.confidence_threshold(calibrated, tta)
        top_p, top_i = probs.topk(k, dim=1)
        for r, p, tp, ti in zip(ok, probs, top_p.tolist(), top_i.tolist()):
            r.probs = p
            r.top_k = [(lm.classes[i], float(q)) for i, q in zip(ti, tp)]
            r.confident = tp[0] >= threshold
            r.temperature = temperature
            if len(r.input) == 1:  # one view: keep the 3×32×32 the network saw, as before
                r.input = r.input[0]
        from .ood import annotate  # "none of these", when the run has a detector
        annotate(lm, ok)
    return results[0] if single else results


def photo_probabilities(run, views: Sequence[torch.Tensor], *, tta_level: int | None = None,
                        calibrated: bool = True, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities N×C for N photos, each given as its views (uint8 V_i×3×32×32, from
    ``model_views``): the mean over a photo's views of ``lm.probabilities`` (softmax of the
    logits / the run's temperature, with the run's TTA unless ``tta_level`` says otherwise).

    All views of all photos go through the network in one ``predict_logits`` call. A photo with
    one view gets exactly what a single-image prediction gives. ``run``: anything ``load_run``
    takes (a run folder, a ``LoadedModel``).
    """
    lm = load_run(run)
    for i, v in enumerate(views):
        if not (isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.ndim == 4
                and len(v) >= 1 and v.shape[1] == 3):
            what = f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"views[{i}] must be a uint8 tensor V×3×H×W with V ≥ 1 (what "
                             f"model_views returns), got {what}")
    if len(views) == 0:
        return torch.empty(0, len(lm.classes))
    tta = lm.tta_level if tta_level is None else tta_level
    logits = predict_logits(lm.model, torch.cat(list(views)), lm.mean, lm.std, tta_level=tta,
                            batch_size=batch_size)
    probs = lm.probabilities(logits, calibrated, tta)                   # (ΣV)×C
    return torch.stack([p.mean(0) for p in probs.split([len(v) for v in views])])


def compare_methods(run, labelled_photos: Iterable[tuple[Source, str]],
                    methods: Sequence[str] = METHODS, *, size: int = 32,
                    tta_level: int | None = None, calibrated: bool = True) -> list[dict]:
    """How well each preprocessing ``method`` serves a model on photos whose class is known.

    labelled_photos: [(photo, class name)], the class one of the run's classes (leave photos of
    no class, a giraffe, out). Returns one row per photo and method, photos in the given order
    within each method: {'photo': its name, 'true_class', 'method', 'predicted' (top class),
    'p_true' (probability of the true class, averaged over the views for multi_crop),
    'correct' (predicted == true_class)}. ``method_scores`` summarises the rows per method.
    """
    lm = load_run(run)
    pairs = list(labelled_photos)
    for _, cls in pairs:
        if cls not in lm.classes:
            raise ValueError(f"unknown class {cls!r}: label each photo with one of "
                             f"{', '.join(lm.classes)} (and leave out photos of no class)")
    for m in methods:
        _check_method(m)
    loaded = [(source_name(src), load_image(src), cls) for src, cls in pairs]
    rows = []
    for method in methods:
        views = [model_views(img, size, method) for _, img, _ in loaded]
        probs = photo_probabilities(lm, views, tta_level=tta_level, calibrated=calibrated)
        for (name, _, cls), p in zip(loaded, probs):
            predicted = lm.classes[int(p.argmax())]
            rows.append({"photo": name, "true_class": cls, "method": method,
                         "predicted": predicted, "p_true": float(p[lm.classes.index(cls)]),
                         "correct": predicted == cls})
    return rows


def method_scores(rows: Sequence[dict]) -> list[dict]:
    """``compare_methods`` rows → one row per method, best first: {'method', 'photos',
    'top1' (fraction correct), 'mean_p_true', 'mean_log_p_true' (the ranking: it punishes a
    confidently wrong answer most, where top-1 ignores how wrong)}."""
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    scores = [{"method": m, "photos": len(rs),
               "top1": sum(r["correct"] for r in rs) / len(rs),
               "mean_p_true": sum(r["p_true"] for r in rs) / len(rs),
               # clamp: a probability that underflowed to 0 would make the mean -inf
               "mean_log_p_true": sum(math.log(max(r["p_true"], 1e-12)) for r in rs) / len(rs)}
              for m, rs in by_method.items()]
    return sorted(scores, key=lambda s: -s["mean_log_p_true"])
