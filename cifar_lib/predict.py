"""Classify your own photos with a trained run: top-k classes, probabilities, a confidence flag.

A CIFAR-10 network always answers with one of its ten classes, even for a giraffe. The softmax
probability of the top class is a weak but useful signal of "I am not sure": below
``threshold`` the prediction is flagged ``confident=False``. (It is not an out-of-distribution
detector: a network can be confidently wrong about things it has never seen.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import load_run
from .images import ImageError, Source, load_image, source_name, to_model_input
from .inference import predict_logits


@dataclass
class Prediction:
    """One photo's result. top_k: [(class name, probability)], most probable first;
    probs: float32 tensor C (sums to 1); image: the loaded RGB photo; input: uint8 3×32×32
    (what the network saw). For a file that failed to load (``errors="report"``), ``error`` holds
    the message and everything else is empty."""
    name: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    confident: bool = False
    probs: torch.Tensor | None = None
    image: Image.Image | None = None
    input: torch.Tensor | None = None
    error: str | None = None

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
        return ranked + ("" if self.confident else "  (not confident)")

    def __str__(self) -> str:
        return f"{self.name}: {self.summary()}"


def _is_batch(images) -> bool:
    return isinstance(images, (list, tuple)) or (
        not isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image))
        and hasattr(images, "__iter__") and not hasattr(images, "read"))


def predict(model_or_run, images: Source | Sequence[Source], *, top_k: int = 3,
            threshold: float = 0.5, method: str = "center_crop", tta_level: int | None = None,
            device: str | torch.device = "cpu", errors: str = "raise"):
    """Classify one photo (returns a ``Prediction``) or a list of photos (returns a list).

    images: paths, bytes (e.g. ``Upload``), open files or PIL images. Each is loaded with
    ``load_image`` and reduced to 3×32×32 by ``method`` ('center_crop' or 'squash'), normalised
    with the checkpoint's mean/std and run through the model (with the run's TTA unless
    ``tta_level`` says otherwise). ``confident`` is True when the top probability ≥ ``threshold``.
    errors: 'raise' (an unusable image raises ImageError) or 'report' (its Prediction carries
    ``error`` and the other photos are still classified).
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    single = not _is_batch(images)
    sources = [images] if single else list(images)
    lm = load_run(model_or_run, device)
    k = max(1, min(top_k, len(lm.classes)))
    results: list[Prediction] = []
    for src in sources:
        name = source_name(src)
        try:
            img = load_image(src)
            results.append(Prediction(name=name, image=img, input=to_model_input(img, 32, method)))
        except ImageError as e:
            if errors == "raise":
                raise
            results.append(Prediction(name=name, error=str(e)))
    ok = [r for r in results if r.error is None]
    if ok:
        batch = torch.stack([r.input for r in ok])                       # uint8 B×3×32×32
        tta = lm.tta_level if tta_level is None else tta_level
        logits = predict_logits(lm.model, batch, lm.mean, lm.std, tta_level=tta)
        probs = F.softmax(logits.float(), dim=1)                         # B×C
        top_p, top_i = probs.topk(k, dim=1)
        for r, p, tp, ti in zip(ok, probs, top_p.tolist(), top_i.tolist()):
            r.probs = p
            r.top_k = [(lm.classes[i], float(q)) for i, q in zip(ti, tp)]
            r.confident = tp[0] >= threshold
    return results[0] if single else results
