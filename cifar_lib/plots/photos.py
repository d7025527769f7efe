"""Figures of lesson 04 (your own photos): preprocessing, top-k bars, a grid of predictions, and
the "none of these" scores compared."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .common import hwc


def plot_preprocessing(img, size: int = 32) -> Figure:
    """The photo, its 'squash' (whole photo stretched to a square, as the original notebook did) and its
    'center_crop' versions at ``size``×``size`` (shown enlarged, pixels visible); the crop box is
    drawn on the original."""
    from ..photos import load_image, square_box, to_model_input
    img = load_image(img)
    squashed = to_model_input(img, size, "squash")
    cropped = to_model_input(img, size, "center_crop")
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(img)
    left, top, right, bottom = square_box(img.size)
    axes[0].add_patch(Rectangle((left, top), right - left, bottom - top, fill=False,
                                edgecolor="yellow", linewidth=2, linestyle="--"))
    axes[0].set_title(f"original {img.size[0]}×{img.size[1]} (crop box dashed)")
    axes[1].imshow(hwc(squashed), interpolation="nearest")
    axes[1].set_title(f"squash → {size}×{size} (stretched)")
    axes[2].imshow(hwc(cropped), interpolation="nearest")
    axes[2].set_title(f"centre crop → {size}×{size}")
    for ax in axes:
        ax.axis("off")
    return fig


def plot_topk(prediction) -> Figure:
    """One photo beside a horizontal bar chart of its top-k probabilities (a ``Prediction``)."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    ax_img.axis("off")
    if prediction.error:
        ax_img.text(0.5, 0.5, prediction.error, ha="center", va="center", wrap=True, fontsize=9)
        ax_bar.axis("off")
        return fig
    ax_img.imshow(prediction.image)
    ax_img.set_title(prediction.name)
    names = [c for c, _ in prediction.top_k][::-1]
    probs = [p for _, p in prediction.top_k][::-1]
    colour = "tab:green" if prediction.confident else "tab:gray"
    bars = ax_bar.barh(names, probs, color=colour)
    ax_bar.bar_label(bars, labels=[f"{p:.1%}" for p in probs], padding=3)
    ax_bar.set_xlim(0, 1.1)
    ax_bar.set_xlabel("probability")
    ax_bar.set_title("confident" if prediction.confident else "not confident (below threshold)")
    return fig


def plot_prediction_grid(predictions: Sequence, *, ncols: int = 4) -> Figure:
    """A grid of photos, each titled with its top class and probability; green = confident,
    grey = below the threshold, red text = the file could not be read."""
    n = max(1, len(predictions))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, predictions):
        if p.error:
            ax.text(0.5, 0.5, f"{p.name}\ncould not be read", ha="center", va="center",
                    color="firebrick")
            continue
        ax.imshow(p.image)
        second = f"\n{p.top_k[1][0]} {p.top_k[1][1]:.0%}" if len(p.top_k) > 1 else ""
        ax.set_title(f"{p.name}\n{p.label} {p.probability:.0%}{second}", fontsize=9,
                     color="darkgreen" if p.confident else "dimgray")
    fig.suptitle("top classes; green = confident, grey = top probability below the threshold",
                 fontsize=10)
    return fig


def plot_open_set(record: dict, metric: str = "auroc") -> Figure:
    """Grouped bars: ``metric`` ('auroc' or 'fpr_at_95_tpr') per score (colours) for each
    model × unknowns pair of an open-set record's rows (``ood.read_record()``)."""
    rows = record["rows"]
    scores = list(dict.fromkeys(r["score"] for r in rows))
    groups = list(dict.fromkeys((r["model"], r["unknowns"]) for r in rows))
    value = {(r["model"], r["unknowns"], r["score"]): r[metric] for r in rows}
    fig = Figure(figsize=(max(6, 1.3 * len(groups)), 3.6))
    ax = fig.subplots()
    width = 0.8 / len(scores)
    x = np.arange(len(groups))
    for i, s in enumerate(scores):
        ax.bar(x + (i - (len(scores) - 1) / 2) * width,
               [value.get((m, u, s), np.nan) for m, u in groups], width, label=s)
    # "corrupted (severity 5)" on two lines, so that neighbouring labels do not run together
    ax.set_xticks(x, [f"{m}\n{u.replace(' (', chr(10) + '(')}" for m, u in groups], fontsize=8)
    if metric == "auroc":
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("AUROC (1 = perfect, 0.5 = chance)")
    else:
        ax.set_ylabel("false alarms at 95% TPR (lower is better)")
    ax.set_ylim(0, 1)
    ax.legend(ncols=len(scores), fontsize=8, loc="lower left")
    ax.set_title("telling unknown images from known ones, score by score")
    fig.tight_layout()
    return fig
