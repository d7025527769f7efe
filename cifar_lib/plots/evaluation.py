"""Figures of lesson 03 (evaluation): confusions, per-class metrics, mistakes, calibration,
Grad-CAM and corruptions."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .common import hwc


def plot_confusion_matrix(cm, classes: Sequence[str], *, normalize: bool = False,
                          title: str | None = None) -> Figure:
    """Seaborn heatmap of a C×C confusion matrix (rows true, columns predicted).

    normalize=True shows each row as fractions of the true class (the diagonal is then the
    per-class accuracy), so rare and common classes compare fairly.
    """
    import seaborn as sns  # imported here: seaborn is slow to import and only needed for this
    cm = np.asarray(cm)
    if normalize:
        totals = cm.sum(1, keepdims=True)
        data = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
        fmt, vmax = ".2f", 1.0
    else:
        data, fmt, vmax = cm, "d", None
    fig = Figure(figsize=(8.5, 7), layout="constrained")
    ax = fig.add_subplot()
    sns.heatmap(data, annot=True, fmt=fmt, cmap="Blues", vmin=0, vmax=vmax, square=True,
                xticklabels=classes, yticklabels=classes, cbar=True, ax=ax,
                annot_kws={"fontsize": 8})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title or ("confusion matrix (fraction of each true class)" if normalize
                           else "confusion matrix (counts)"))
    return fig


def plot_per_class(per_class: Sequence[dict], *, title: str = "per-class precision and recall"
                   ) -> Figure:
    """Grouped bars of precision and recall (= per-class accuracy) for each class."""
    names = [r["class"] for r in per_class]
    x = np.arange(len(names))
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    for offset, key, colour in ((-0.2, "recall", "tab:blue"), (0.2, "precision", "tab:orange")):
        vals = [np.nan if r[key] is None else r[key] for r in per_class]
        label = "recall (= accuracy)" if key == "recall" else key
        ax.bar(x + offset, vals, width=0.4, label=label, color=colour)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside upper right", ncols=2)
    ax.set_title(title, loc="left")
    return fig


def plot_mistakes(images, mistakes: Sequence[dict], *, ncols: int = 8,
                  title: str = "most confident mistakes") -> Figure:
    """Gallery of wrong predictions: each panel shows the image (uint8 3×32×32, from
    ``images[m['index']]``), 'true → predicted' and the confidence. ``mistakes`` comes from
    ``evaluation.confident_mistakes`` (or ``EvaluationReport.mistakes``)."""
    n = max(1, len(mistakes))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(1.6 * ncols, 1.9 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes):
        ax.imshow(hwc(images[m["index"]]), interpolation="nearest")
        ax.set_title(f"{m['true']}\n→ {m['predicted']} {m['confidence']:.0%}", fontsize=8,
                     color="firebrick")
    if not mistakes:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{title} (true class → prediction, confidence)")
    return fig


def _reliability_axes(top, bottom, bins: Sequence[dict], ece: float | None, title: str, *,
                      dots: bool = False) -> None:
    """One reliability panel on given axes: accuracy bars per confidence bin against the
    diagonal, the gap to mean confidence hatched red (readable both above the bar, over-
    confident, and inside it, under-confident), and the images per bin below; ``dots`` marks
    each bin's (mean confidence, accuracy). None in a bin (JSON's NaN) is an empty bin."""
    lo = np.array([b["lo"] for b in bins])
    hi = np.array([b["hi"] for b in bins])
    width, centre = hi - lo, (lo + hi) / 2
    acc = np.array([np.nan if b["accuracy"] is None else b["accuracy"] for b in bins], float)
    conf = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in bins], float)
    counts = np.array([b["count"] for b in bins])
    has = counts > 0
    top.bar(centre[has], acc[has], width=width[has], color="tab:blue", edgecolor="black",
            linewidth=0.5, label="accuracy")
    top.bar(centre[has], np.abs(conf - acc)[has], bottom=np.minimum(acc, conf)[has],
            width=width[has], color="none", edgecolor="tab:red", hatch="///", linewidth=1,
            label="gap to mean confidence")
    if dots:
        top.plot(conf[has], acc[has], ".", color="black", markersize=4)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title + (f" (ECE {ece:.2%})" if ece is not None and not math.isnan(ece)
                           else ""), fontsize=10)
    bottom.bar(centre, counts, width=width, color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_yscale("log" if counts.max(initial=0) > 50 * max(1, counts[has].min(initial=1))
                      else "linear")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")


def plot_reliability_before_after(bins_before: Sequence[dict], bins_after: Sequence[dict],
                                  ece_before: float | None, ece_after: float | None, *,
                                  title: str = "temperature scaling") -> Figure:
    """Two reliability diagrams side by side (bins from ``evaluation.calibration_bins``, e.g.
    ``Calibration.bins_before`` / ``bins_after``, measured on the same images): the plain
    softmax on the left, softmax(logits / T) on the right; bars below the diagonal are
    over-confident."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _reliability_axes(axes[0, 0], axes[1, 0], bins_before, ece_before, "before")
    _reliability_axes(axes[0, 1], axes[1, 1], bins_after, ece_after, "after")
    fig.suptitle(title + "\nbars below the diagonal: over-confident")
    return fig


def plot_grad_cam(images, maps, titles: Sequence[str], *, ncols: int = 8, alpha: float = 0.5,
                  title: str = "what the network looks at: each image, then its Grad-CAM map "
                               "for the predicted class") -> Figure:
    """Each uint8 3×H×W image of ``images`` (N of them) above its Grad-CAM map (float N×H×W in
    [0, 1], e.g. from ``attribution.cam_for_run``) laid over it in the 'jet' colormap (red = where
    the evidence for the class is strongest); ``titles``: one per image (``attribution.cam_titles``
    gives 'dog→cat 62%'). ``alpha``: opacity of the heat map."""
    images = torch.as_tensor(images).cpu()
    maps = torch.as_tensor(maps).detach().float().cpu()
    n = len(images)
    if len(maps) != n or len(titles) != n:
        raise ValueError(f"need one map and one title per image: got {n} images, {len(maps)} "
                         f"maps, {len(titles)} titles")
    if n and maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape[-2:])} must have the images' size "
                         f"{tuple(images.shape[-2:])}: grad_cam upsamples them")
    ncols = max(1, min(ncols, n))
    nrows = 2 * max(1, math.ceil(n / ncols))  # an image row, then its heat-map row
    fig = Figure(figsize=(1.5 * ncols + 0.8, 1.55 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    heat = None
    for i in range(n):
        top, bottom = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
        img = hwc(images[i])
        top.imshow(img, interpolation="nearest")
        top.set_title(titles[i], fontsize=8)
        bottom.imshow(img, interpolation="nearest")
        heat = bottom.imshow(maps[i].numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                             interpolation="bilinear")
    if heat is not None:
        fig.colorbar(heat, ax=axes, shrink=0.5, label="Grad-CAM (1 = strongest)")
    fig.suptitle(title)
    return fig


def _corruption_table(rows: Sequence[dict], models: Sequence[str] | None = None) -> dict:
    """Rows of ``cifar_lib.robustness.corruption_accuracy`` → model → {'clean': %,
    'grid': {corruption: {severity: %}}}, models in row order (or ``models``' order)."""
    out: dict[str, dict] = {}
    for r in rows:
        m = out.setdefault(r["model"], {"clean": None, "grid": {}})
        if r["corruption"] == "clean":
            m["clean"] = 100 * r["accuracy"]
        else:
            m["grid"].setdefault(r["corruption"], {})[r["severity"]] = 100 * r["accuracy"]
    if models is not None:
        unknown = [m for m in models if m not in out]
        if unknown:
            raise ValueError(f"no rows for model(s) {', '.join(unknown)}; the rows have "
                             f"{', '.join(out) or 'no models'}")
        out = {m: out[m] for m in models}
    return out


def _mean_corrupted(grid: dict) -> float:
    values = [a for by_sev in grid.values() for a in by_sev.values()]
    return float(np.mean(values)) if values else float("nan")


def plot_corruption_heatmap(rows: Sequence[dict], models: Sequence[str] | None = None) -> Figure:
    """One heatmap per model, side by side: accuracy (%) per corruption (rows) × severity 1..5
    (columns), annotated, on one shared colour scale; each title gives the clean accuracy and
    the mean over all corrupted cells. ``rows``: ``corruption_accuracy``'s (or a record's)."""
    import seaborn as sns  # as in plot_confusion_matrix: slow to import, needed only here
    table = _corruption_table(rows, models)
    if not table:
        raise ValueError("no rows to plot: run cifar_lib.robustness.corruption_accuracy first")
    corruptions = list(dict.fromkeys(c for m in table.values() for c in m["grid"]))
    severities = sorted({s for m in table.values() for by in m["grid"].values() for s in by})
    grids = {name: np.array([[m["grid"].get(c, {}).get(s, np.nan) for s in severities]
                             for c in corruptions]) for name, m in table.items()}
    every = np.concatenate([g.ravel() for g in grids.values()])
    vmin, vmax = np.nanmin(every), np.nanmax(every)  # one scale, so equal colours mean equal %
    fig = Figure(figsize=(0.9 + 3.9 * len(table), 1.3 + 0.42 * len(corruptions)),
                 layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False, sharey=True)[0]
    for ax, (name, grid) in zip(axes, grids.items()):
        sns.heatmap(grid, annot=True, fmt=".0f", cmap="RdYlGn", vmin=vmin, vmax=vmax, cbar=False,
                    xticklabels=severities, yticklabels=corruptions, ax=ax,
                    annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white")
        ax.set_xlabel("severity")
        ax.tick_params(axis="y", labelrotation=0)
        clean = table[name]["clean"]
        ax.set_title(f"{name}: clean {clean:.1f}%, mean corrupted "
                     f"{_mean_corrupted(table[name]['grid']):.1f}%" if clean is not None
                     else f"{name}: mean corrupted {_mean_corrupted(table[name]['grid']):.1f}%",
                     fontsize=10)
    fig.colorbar(axes[0].collections[0], ax=list(axes), label="accuracy (%)", shrink=0.9)
    return fig


def plot_corruption_examples(image, corruptions: Sequence[str] | None = None,
                             severities: Sequence[int] = (1, 2, 3, 4, 5), seed: int = 0
                             ) -> Figure:
    """One uint8 image 3×H×W under each corruption (rows) at each severity (columns), the
    clean image first: what ``bench robustness`` feeds the networks."""
    from ..corruptions import CORRUPTIONS, corrupt
    names = list(CORRUPTIONS if corruptions is None else corruptions)
    batch = torch.as_tensor(image)[None]
    fig = Figure(figsize=(1.2 * (len(severities) + 1), 1.25 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), len(severities) + 1))
    for r, name in enumerate(names):
        views = [batch[0]] + [corrupt(batch, name, s, seed=seed)[0] for s in severities]
        for col, (ax, view) in enumerate(zip(axes[r], views)):
            ax.imshow(hwc(view))
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8)
            if r == 0:
                ax.set_title("clean" if col == 0 else f"severity {severities[col - 1]}",
                             fontsize=8)
    return fig
