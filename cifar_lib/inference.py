"""Logits for a whole split, in batches, optionally with test-time augmentation (TTA)."""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tqdm.auto import tqdm

from .batches import normalize
from .data import CifarSplit


def tta_logits(model: nn.Module, x: torch.Tensor, level: int = 0,
               plain: torch.Tensor | None = None) -> torch.Tensor:
    """Logits N×10 for normalised images N×3×32×32, averaged over augmented views.

    level 0: the image only. level 1: + its mirror image (the net was trained on both).
    level 2: + mirrors of the image shifted one pixel up-left and down-right (reflect-filled),
    weighted so the untranslated pair counts half, as in airbench. The views and their weights
    are ``tta_views``'s: the logits are Σ weight · model(view). ``plain``: ``model(x)``, when
    already computed (the first view's logits, not computed again).
    """
    views = tta_views(x, level)
    first = model(x) if plain is None else plain
    if len(views) == 1:
        return first
    return sum(weight * (model(view) if i else first) for i, (_, weight, view) in enumerate(views))


def tta_views(x: torch.Tensor, level: int = 0) -> list[tuple[str, float, torch.Tensor]]:
    """The views that ``tta_logits`` averages at ``level``, as (name, weight, images N×3×H×W);
    the weights sum to 1 and Σ weight · model(view) equals ``tta_logits`` up to rounding.
    level 0: 1 view, level 1: 2, level 2: 6."""
    if level not in (0, 1, 2):
        raise ValueError(f"tta level must be 0, 1 or 2, got {level}")
    if level == 0:
        return [("image", 1.0, x)]
    if level == 1:
        return [("image", 0.5, x), ("mirror", 0.5, x.flip(-1))]
    padded = F.pad(x, (1,) * 4, mode="reflect")
    h, w = x.shape[-2:]
    # content moved one pixel down-right, and one pixel up-left (reflect-filled at the border)
    down_right, up_left = padded[..., :h, :w], padded[..., 2:h + 2, 2:w + 2]
    return [("image", 0.25, x), ("mirror", 0.25, x.flip(-1)),
            ("moved ↘", 0.125, down_right), ("moved ↘, mirror", 0.125, down_right.flip(-1)),
            ("moved ↖", 0.125, up_left), ("moved ↖, mirror", 0.125, up_left.flip(-1))]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op for fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def selective_tta_logits(model: nn.Module, x: torch.Tensor, level: int, fraction: float,
                         plain: torch.Tensor | None = None) -> torch.Tensor:
    """Logits N×10 with TTA only where it can matter: the plain logits, except for the
    ``fraction`` of images (rounded) whose top softmax probability is lowest, which get
    ``tta_logits``. Confident predictions rarely change under TTA, so this keeps almost all of
    its gain (measured in benchmarks/README.md) for 1 + 5·fraction forward passes instead of 6:
    the plain view's logits, already computed, are reused (``plain``: ``model(x)``, when computed
    before this call; it is left unchanged).
    """
    logits = model(x) if plain is None else plain.clone()
    k = round(fraction * len(x)) if level else 0
    if k:
        unsure = logits.softmax(1).amax(1).topk(k, largest=False).indices
        (_, weight, _), *others = tta_views(x[unsure], level)  # the first view is the image
        logits[unsure] = weight * logits[unsure] + sum(w * model(v) for _, w, v in others)
    return logits


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float],
                   std: Sequence[float], *, tta_level: int = 0, batch_size: int = 1000,
                   amp_dtype: torch.dtype | None = None, tta_fraction: float = 1.0,
                   progress: str | None = None, with_plain: bool = False):
    """float32 logits N×10 (on CPU) for uint8 images N×3×32×32, in eval mode, batch by batch.

    ``tta_fraction`` < 1: TTA only for that fraction of each batch, the least confident
    (``selective_tta_logits``). ``progress``: a label for a progress bar over the batches
    (None: no bar). ``with_plain``: (those logits, the plain images' logits N×10), both from
    one pass: TTA's first view is the plain image."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out, plains = [], []
    try:
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc=progress, unit="batch", leave=False,
                          disable=progress is None or len(starts) < 2):
            x = normalize(images[start:start + batch_size].to(device), mean, std)
            with autocast(device, amp_dtype):
                plain = model(x) if with_plain else None
                logits = (tta_logits(model, x, tta_level, plain) if tta_fraction >= 1 else
                          selective_tta_logits(model, x, tta_level, tta_fraction, plain))
                out.append(logits.float().cpu())
                if with_plain:
                    plains.append(plain.float().cpu())
    finally:
        model.train(was_training)
    logits = torch.cat(out) if out else torch.empty(0, 10)
    if with_plain:
        return logits, torch.cat(plains) if plains else torch.empty(0, 10)
    return logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label (0..1)."""
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


def loss_and_accuracy(model: nn.Module, split: CifarSplit, mean: Sequence[float],
                      std: Sequence[float], *, tta_level: int = 0,
                      amp_dtype: torch.dtype | None = None, tta_fraction: float = 1.0,
                      with_plain: bool = False):
    """(mean cross-entropy, accuracy in 0..1) of ``model`` on ``split``; ``with_plain``: that
    pair with TTA, then the pair without, from one pass (``predict_logits``)."""
    out = predict_logits(model, split.images, mean, std, tta_level=tta_level,
                         amp_dtype=amp_dtype, tta_fraction=tta_fraction, with_plain=with_plain)
    pairs = [(F.cross_entropy(logits, split.labels).item(), accuracy(logits, split.labels))
             for logits in (out if with_plain else [out])]
    return tuple(pairs) if with_plain else pairs[0]
