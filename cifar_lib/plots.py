"""Figures for the notebooks. Every function returns a ``matplotlib.figure.Figure``.

Figures are built with ``Figure()`` rather than ``plt.figure()``: they are not registered with
pyplot, so a notebook shows each one exactly once (as the cell's value or with ``display``),
nothing leaks between calls, and no GUI backend is ever needed. ``save_figure`` writes a PNG
into a run folder.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator

from .checkpoint import _atomic_write


def _hwc(img) -> np.ndarray:
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
    _atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


# ----------------------------------------------------------------------------- training


def image_grid(split, n: int = 32, cols: int = 8, seed: int = 0) -> Figure:
    """A grid of ``n`` random images of a ``CifarSplit`` with their labels."""
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    rows = -(-len(idx) // cols)
    fig = Figure(figsize=(1.4 * cols, 1.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx.tolist()):
        ax.imshow(_hwc(split.images[i]))
        ax.set_title(split.classes[split.labels[i]], fontsize=8)
    return fig


def plot_class_counts(*splits) -> Figure:
    """Side-by-side bar charts of images per class, one per (name, split)."""
    from .data import class_counts
    fig = Figure(figsize=(5 * len(splits), 3), layout="constrained")
    axes = fig.subplots(1, len(splits), squeeze=False)
    for ax, (name, split) in zip(axes.flat, splits):
        counts = class_counts(split)
        ax.bar(list(counts), list(counts.values()), color="tab:blue")
        ax.set_title(f"{name}: {len(split):,} images")
        ax.tick_params(axis="x", rotation=60)
    return fig


def plot_curves(histories) -> Figure:
    """Loss and accuracy per epoch (train and test) for one history or a {name: history} dict."""
    if not isinstance(histories, dict):
        histories = {"": histories}
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        label = f"{name} " if name else ""
        for split, style in (("train", "--"), ("test", "-")):
            rows = [(e, h) for e, h in zip(epochs, history) if f"{split}_loss" in h]
            if not rows:
                continue
            ax_loss.plot([e for e, _ in rows], [h[f"{split}_loss"] for _, h in rows], style,
                         marker="o", label=f"{label}{split}")
            ax_acc.plot([e for e, _ in rows], [100 * h[f"{split}_acc"] for _, h in rows], style,
                        marker="o", label=f"{label}{split}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


class LiveCurves:
    """A ``fit`` callback that redraws the curves in place after every epoch.

    In Jupyter and Colab the figure updates in one output; elsewhere it does nothing visible.
    """

    def __init__(self):
        self.history: list[dict] = []
        self._handle = None

    def __call__(self, row: dict) -> None:
        self.history.append(row)
        fig = plot_curves(self.history)
        try:
            from IPython.display import display
        except ImportError:
            return
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


# ----------------------------------------------------------------------------- evaluation


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
        ax.imshow(_hwc(images[m["index"]]), interpolation="nearest")
        ax.set_title(f"{m['true']}\n→ {m['predicted']} {m['confidence']:.0%}", fontsize=8,
                     color="firebrick")
    if not mistakes:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{title} (true class → prediction, confidence)")
    return fig


def plot_reliability(bins: Sequence[dict], ece: float | None = None, *,
                     title: str = "reliability diagram") -> Figure:
    """Reliability diagram from ``evaluation.calibration_bins``: per confidence bin, accuracy
    (bars) against the diagonal of perfect calibration; the red part is the gap (below the
    diagonal: over-confident). Under it, how many predictions fall in each bin."""
    lo = np.array([b["lo"] for b in bins])
    hi = np.array([b["hi"] for b in bins])
    width, centre = hi - lo, (lo + hi) / 2
    acc = np.array([np.nan if b["accuracy"] is None else b["accuracy"] for b in bins], float)
    conf = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in bins], float)
    counts = np.array([b["count"] for b in bins])
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    has = counts > 0
    top.bar(centre[has], acc[has], width=width[has], color="tab:blue", edgecolor="black",
            linewidth=0.5, label="accuracy")
    # The gap as a hatched outline from accuracy to mean confidence, readable both above the bar
    # (over-confident) and inside it (under-confident).
    top.bar(centre[has], np.abs(conf - acc)[has], bottom=np.minimum(acc, conf)[has],
            width=width[has], color="none", edgecolor="tab:red", hatch="///", linewidth=1,
            label="gap to mean confidence")
    top.plot(conf[has], acc[has], ".", color="black", markersize=4)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.legend(loc="upper left")
    top.set_title(title + (f" (ECE {ece:.2%})" if ece is not None and not math.isnan(ece) else "")
                  + "\nbars below the diagonal: over-confident", fontsize=10)
    bottom.bar(centre, counts, width=width, color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_yscale("log" if counts.max(initial=0) > 50 * max(1, counts[has].min(initial=1))
                      else "linear")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("images")
    return fig


# ----------------------------------------------------------------------------- benchmark


def plot_throughput(rows: Sequence[dict], *, title: str = "inference throughput") -> Figure:
    """Log-log images/s against batch size, one line per (device, variant, method); the error
    bars span the interquartile range. Rows that are not 'ok' (no GPU, errors) are skipped."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("images_per_s"):
            series.setdefault((r["device"], r["variant"], r["method"]), []).append(r)
    for (device, variant, method), rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch_size"])
        x = np.array([r["batch_size"] for r in rs])
        y = np.array([r["images_per_s"] for r in rs])
        low = np.array([r.get("images_per_s_low") or v for r, v in zip(rs, y)])
        high = np.array([r.get("images_per_s_high") or v for r, v in zip(rs, y)])
        seed = method.startswith("seed")
        ax.errorbar(x, y, yerr=[y - low, high - y], marker="x" if seed else "o", markersize=4,
                    linestyle=":" if seed else ("-" if device == "cpu" else "--"), capsize=2,
                    label=f"{device} {variant}" + (" (seed's timing)" if seed else ""))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({r["batch_size"] for rs in series.values() for r in rs})
    if sizes:  # label the measured batch sizes themselves, not powers of two
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / second")
    ax.grid(True, which="both", alpha=0.3)
    skipped = sorted({f"{r['device']}: {r['status']}" for r in rows if r.get("status") != "ok"})
    if series:
        ax.legend(fontsize=8)
    ax.set_title(title + (f"\n(not shown: {'; '.join(skipped)[:120]})" if skipped else ""),
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- real photos


def plot_preprocessing(img, size: int = 32) -> Figure:
    """The photo, its 'squash' (whole photo stretched to a square, as the seed did) and its
    'center_crop' versions at ``size``×``size`` (shown enlarged, pixels visible); the crop box is
    drawn on the original."""
    from .images import load_image, square_box, to_model_input
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
    axes[1].imshow(_hwc(squashed), interpolation="nearest")
    axes[1].set_title(f"squash → {size}×{size} (stretched)")
    axes[2].imshow(_hwc(cropped), interpolation="nearest")
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


def plot_training_throughput(rows: Sequence[dict], *,
                             title: str = "training throughput") -> Figure:
    """Training images/s (log scale) as bars: one group per recipe, one bar per device, each
    GPU bar labelled with its speed-up over the same recipe's CPU bar. A device that was not
    measured (no GPU on this machine, an error) gets no bar, only its status written in its
    place. ``rows``: ``cifar_lib.bench.throughput.run``'s rows."""
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    devices = list(dict.fromkeys(r["device"] for r in rows))
    by_key = {(r["recipe"], r["device"]): r for r in rows}
    measured = [r["images_per_s"] for r in rows
                if r.get("status") == "ok" and r.get("images_per_s")]
    low, high = (min(measured) / 4, max(measured) * 4) if measured else (1.0, 10.0)
    fig = Figure(figsize=(max(5.0, 1.4 * len(recipes) * max(len(devices), 1) + 2), 4.5),
                 layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(devices), 1)
    for j, device in enumerate(devices):
        offsets = np.arange(len(recipes)) + (j - (len(devices) - 1) / 2) * width
        names = {r.get("device_name") for r in rows if r["device"] == device} - {None}
        label = device + (f" ({names.pop()})" if len(names) == 1 else "")
        for x, recipe in zip(offsets, recipes):
            r = by_key.get((recipe, device))
            if r is None:
                continue
            if r.get("status") != "ok" or not r.get("images_per_s"):
                status = "no GPU" if r.get("status") == "no GPU available" else r.get("status")
                ax.text(x, low * 1.15, str(status)[:40], rotation=90, ha="center", va="bottom",
                        fontsize=8, color="0.4")
                continue
            v = r["images_per_s"]
            ax.bar(x, v, width * 0.9, color=f"C{j}", label=label)
            label = None  # one legend entry per device
            speedup = r.get("speedup_vs_cpu")
            text = f"{v:,.0f}/s" + (f"\n{speedup:.1f}× CPU" if speedup and device != "cpu"
                                    else "")
            ax.annotate(text, (x, v), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlim(-0.5, len(recipes) - 0.5)
    ax.set_xticks(np.arange(len(recipes)), recipes)
    ax.set_xlabel("recipe")
    ax.set_ylabel("training images / second")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if measured:
        ax.legend(fontsize=8, loc="upper left")
    no_gpu = any(r.get("status") == "no GPU available" for r in rows)
    ax.set_title(title + ("\n(no GPU on this machine: CPU only)" if no_gpu else ""), fontsize=10)
    return fig
