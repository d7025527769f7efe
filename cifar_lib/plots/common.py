"""What every figure module shares: images as arrays, and saving a figure into a run folder.

Figures are built with ``Figure()`` rather than ``plt.figure()``: they are not registered with
pyplot, so a notebook shows each one exactly once (as the cell's value or with ``display``),
nothing leaks between calls, and no GUI backend is ever needed.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..files import atomic_write


def hwc(img) -> np.ndarray:
    """uint8 3×H×W tensor/array or a PIL image → H×W×3 array for imshow."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    channels_first = a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3)
    return a.transpose(1, 2, 0) if channels_first else a


def save_figure(fig: Figure, run_dir, name: str, *, dpi: int = 150) -> Path:
    """Save ``fig`` as ``run_dir/<name>.png`` (atomically) and return the path."""
    path = Path(run_dir) / (name if name.endswith(".png") else f"{name}.png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def show(images: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised float 3×H×W → H×W×3 in [0, 1] for imshow (the normalisation undone)."""
    from ..batches import channel_stats
    x = images.detach().float().cpu()[None] * channel_stats(std) + channel_stats(mean)
    return x[0].clamp(0, 1).permute(1, 2, 0).numpy()


def class_name(classes, label: int) -> str:
    return classes[label] if classes is not None else str(label)
