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

from .files import atomic_write


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
    atomic_write(path, lambda f: f.write(buf.getvalue()))
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
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _reliability_axes(top, bottom, bins, ece, title, dots=True)
    top.set_title(top.get_title() + "\nbars below the diagonal: over-confident", fontsize=10)
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
    from .photos import load_image, square_box, to_model_input
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


# ----------------------------------------------------------------------------- the fast recipe's ideas


def _show(images: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised float 3×H×W → H×W×3 in [0, 1] for imshow (the normalisation undone)."""
    from .batches import channel_stats
    x = images.detach().float().cpu()[None] * channel_stats(std) + channel_stats(mean)
    return x[0].clamp(0, 1).permute(1, 2, 0).numpy()


_PATCH_LABELS = [f"{c} {p}" for c in "RGB" for p in ("↖", "↗", "↙", "↘")]  # (c, kh, kw) order


def plot_whitening(layer, images: torch.Tensor) -> Figure:
    """A fitted ``Whitening`` layer: its 12 filters as 2×2 colour images (grey = 0, each scaled
    to its own range; faintest patch direction first, titled with that direction's variance),
    and the 12×12 covariance of the 2×2 patches of ``images`` (normalised float N×3×H×W) before,
    and of the layer's first 12 output channels after (``Whitening.covariances``)."""
    before, after = layer.covariances(images)
    filters = layer.weight[:12].detach().float().cpu()                   # 12×3×2×2
    # Each filter is an eigenvector (length 1) divided by sqrt(variance + eps).
    variances = 1 / filters.flatten(1).pow(2).sum(1) - layer.eps
    fig = Figure(figsize=(12, 6.8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 2.8])
    for k, ax in enumerate(top.subplots(1, 12)):
        f = filters[k]
        ax.imshow((0.5 + 0.5 * f / f.abs().max()).permute(1, 2, 0).numpy(),
                  interpolation="nearest")
        ax.set_title(f"var {variances[k]:.2g}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    top.suptitle("the 12 whitening filters (2×2 pixels, RGB; grey = 0), from the faintest "
                 "direction of patch space to the strongest (the average brightness)", fontsize=10)
    for ax, cov, title in zip(bottom.subplots(1, 2), (before, after),
                              ("covariance of 2×2 image patches (12 numbers each)",
                               "covariance after whitening (first 12 channels)")):
        lim = float(cov.abs().max())
        im = ax.imshow(cov.cpu().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        bottom.colorbar(im, ax=ax, shrink=0.85)
        ax.set_xticks(range(12), _PATCH_LABELS, fontsize=7, rotation=90)
        ax.set_yticks(range(12), _PATCH_LABELS, fontsize=7)
        ax.set_title(title, fontsize=10)
    return fig


def plot_lr_schedule(cfg, steps_per_epoch: int) -> Figure:
    """The learning rate at every step of a run of ``cfg`` (``train.lr_schedule`` × ``cfg.lr``),
    with epochs marked on a second axis along the top."""
    from .train import lr_schedule
    total = cfg.epochs * steps_per_epoch
    lrs = [cfg.lr * m for m in lr_schedule(cfg, total)]
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(range(total), lrs, color="tab:blue")
    if cfg.schedule == "triangle":
        peak = int(cfg.lr_peak_at * total)
        for step, ha in ((0, "left"), (peak, "left"), (total - 1, "right")):
            ax.annotate(f"{lrs[step]:.3g}", (step, lrs[step]), ha=ha, fontsize=8,
                        xytext=(4 if ha == "left" else -4, 4), textcoords="offset points")
        ax.axvline(peak, color="gray", linestyle=":", linewidth=1)
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch,
                                               lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    ax.set_xlim(0, total)
    ax.set_ylim(0, max(lrs) * 1.15)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    extra = (f"; BatchNorm and whitening biases × {cfg.bias_lr_scale:g}"
             if cfg.bias_lr_scale != 1 else "")
    ax.set_title(f"'{cfg.schedule}' schedule over {total:,} steps ({cfg.epochs} epochs × "
                 f"{steps_per_epoch} steps of {cfg.batch_size}){extra}", fontsize=10)
    return fig


def plot_lookahead(total_steps: int, every: int = 5) -> Figure:
    """Lookahead's ``decay`` over a run of ``total_steps``: every ``every`` steps the slow copy
    becomes decay · slow + (1 − decay) · net and is copied back into the net. The line is
    ``Lookahead.decay`` at every step 0 … total_steps; the dots are the updates."""
    from .train import Lookahead
    steps = np.arange(total_steps + 1)
    decays = [Lookahead.decay(int(s), total_steps) for s in steps]
    updates = steps[(steps > 0) & (steps % every == 0)]
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, decays, color="tab:purple", label="decay = 0.95⁵ · (step / total)³")
    ax.plot(updates, [decays[s] for s in updates], ".", color="tab:purple", markersize=4,
            label=f"an update every {every} steps")
    end = decays[-1]
    ax.annotate(f"{end:.3f}: an average over about {1 / (1 - end):.1f} updates\n"
                f"(the last ~{every / (1 - end):.0f} steps)", (total_steps, end),
                xytext=(-10, -30), textcoords="offset points", ha="right", fontsize=8)
    ax.set_xlim(0, total_steps)
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("decay (share of the slow copy kept)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("lookahead: 0 at first (no averaging), then a longer and longer average",
                 fontsize=10)
    return fig


def plot_augmented_batch(split, cfg, n: int = 8, epochs: int = 2) -> Figure:
    """The first ``n`` images of ``split`` as they are (top row) and as ``BatchIterator`` hands
    them to the model with ``cfg``'s flip and translate in each of ``epochs`` epochs (one row
    each), titled with each image's draws: 'flip' when mirrored and the shift (dy, dx), which
    moves the content up by dy and left by dx (reflect-filled)."""
    from .batches import BatchIterator, normalize
    sub = split.subset(n)
    n = len(sub)
    it = BatchIterator(sub, n, mean=cfg.mean, std=cfg.std, shuffle=False, flip=cfg.flip,
                       translate=cfg.translate, seed=cfg.seed)
    fig = Figure(figsize=(1.5 * n, 1.75 * (epochs + 1)), layout="constrained")
    axes = fig.subplots(epochs + 1, n, squeeze=False)
    originals = normalize(sub.images, cfg.mean, cfg.std)
    rows = [("original", originals, None, None)]
    for epoch in range(epochs):
        it.epoch = epoch
        _order, flips, shifts = it.epoch_draws()
        x, _ = next(iter(it))
        rows.append((f"epoch {epoch + 1}", x, flips, shifts))
    for r, (name, x, flips, shifts) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(_show(x[i], cfg.mean, cfg.std), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(sub.classes[sub.labels[i]], fontsize=8)
            else:
                parts = (["flip"] if flips is not None and flips[i] else []) + \
                    ([f"({shifts[i, 0]:+d}, {shifts[i, 1]:+d})"] if shifts is not None else [])
                ax.set_title(" ".join(parts) or "as is", fontsize=8)
        axes[r, 0].set_ylabel(name)
    fig.suptitle(f"flip={cfg.flip!r}, translate={cfg.translate}: each image mirrored or not "
                 f"and shifted by (dy, dx) pixels, new draws every epoch", fontsize=10)
    return fig


def plot_label_smoothing(smoothing: float, num_classes: int = 10, true_class: int = 3,
                         classes: Sequence[str] | None = None, max_margin: float = 10.0
                         ) -> Figure:
    """Left: the one-hot target and the smoothed one (``train.smoothed_targets``) for one image
    of class ``true_class``. Right: the cross-entropy as a function of the margin (the true
    class's logit minus every other logit), without and with ``smoothing``: without it the loss
    keeps falling as the margin grows; with it the best margin is finite,
    log((1 − s + s/K) / (s/K))."""
    import torch.nn.functional as F
    from .train import smoothed_targets
    classes = list(classes) if classes is not None else [str(k) for k in range(num_classes)]
    y = torch.tensor([true_class])
    soft = smoothed_targets(y, num_classes, smoothing)[0]
    hard = smoothed_targets(y, num_classes, 0.0)[0]
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax_t, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    x = np.arange(num_classes)
    ax_t.bar(x - 0.2, hard.numpy(), width=0.4, color="0.6", label="one-hot (no smoothing)")
    bars = ax_t.bar(x + 0.2, soft.numpy(), width=0.4, color="tab:blue",
                    label=f"label_smoothing={smoothing:g}")
    ax_t.bar_label(bars, labels=[f"{v:.2f}" for v in soft.tolist()], fontsize=7, padding=2)
    ax_t.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    ax_t.set_ylim(0, 1.12)
    ax_t.set_ylabel("target probability")
    ax_t.legend(fontsize=8, loc="upper right")
    ax_t.set_title(f"the target for a {classes[true_class]}", fontsize=10)
    margins = torch.linspace(0, max_margin, 401)
    logits = torch.zeros(len(margins), num_classes)
    logits[:, true_class] = margins
    labels = y.expand(len(margins))
    for s, colour in ((0.0, "0.4"), (smoothing, "tab:blue")):
        losses = F.cross_entropy(logits, labels, label_smoothing=s, reduction="none")
        ax_l.plot(margins.numpy(), losses.numpy(), color=colour,
                  label=f"label_smoothing={s:g}")
    if smoothing > 0:
        best = math.log((1 - smoothing + smoothing / num_classes) / (smoothing / num_classes))
        ax_l.axvline(best, color="tab:blue", linestyle=":", linewidth=1)
        ax_l.annotate(f"lowest at {best:.2f}", (best, ax_l.get_ylim()[1] * 0.8), xytext=(4, 0),
                      textcoords="offset points", fontsize=8, color="tab:blue")
    ax_l.set_xlabel("margin: true class logit − each other logit")
    ax_l.set_ylabel("cross-entropy")
    ax_l.grid(alpha=0.3)
    ax_l.legend(fontsize=8)
    ax_l.set_title("smoothing stops the logits growing without end", fontsize=10)
    return fig


def plot_tta_views(image, mean, std, level: int = 2, model=None, label: int | None = None,
                   classes: Sequence[str] | None = None) -> Figure:
    """The views of one uint8 3×32×32 image that test-time augmentation averages at ``level``
    (``inference.tta_views``), each titled with its weight; with ``model`` (in eval mode on the
    CPU) and ``label``, also the probability the model gives the true class for that view and
    for the weighted average of the views' logits (what ``tta_logits`` returns)."""
    from .batches import normalize
    from .inference import tta_views
    x = normalize(torch.as_tensor(image)[None], mean, std)
    views = tta_views(x, level)
    fig = Figure(figsize=(1.9 * len(views), 2.9), layout="constrained")
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    averaged = 0
    if model is not None:
        device, was_training = next(model.parameters()).device, model.training
        model.eval()
    for ax, (name, weight, v) in zip(axes, views):
        ax.imshow(_show(v[0], mean, std), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"{name}\nweight {weight:g}"
        if model is not None and label is not None:
            with torch.no_grad():
                logits = model(v.to(device)).float().cpu()
            averaged = averaged + weight * logits
            title += f"\np({_class(classes, label)}) = {logits.softmax(1)[0, label]:.0%}"
        ax.set_title(title, fontsize=8)
    if model is not None:
        model.train(was_training)
    heading = f"test-time augmentation, level {level}: {len(views)} views"
    if model is not None and label is not None:
        heading += (f"; the weighted average of their logits gives "
                    f"p({_class(classes, label)}) = {averaged.softmax(1)[0, label]:.0%}")
    fig.suptitle(heading, fontsize=10)
    return fig


def _class(classes, label: int) -> str:
    return classes[label] if classes is not None else str(label)


# ----------------------------------------------------------------------------- calibration


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


def plot_ablation(summary: Sequence[dict], *, title: str = "what each trick buys") -> Figure:
    """The ablation summary (``bench.ablation.summarize`` rows): test accuracy of each variant
    as a bar (± its spread over seeds), the full recipe's as a dashed line, each bar labelled
    with its difference to the full recipe in points."""
    fig = Figure(figsize=(8, 0.45 * len(summary) + 1.4), layout="constrained")
    ax = fig.subplots()
    names = [r["variant"] for r in summary][::-1]
    means = [r["test_acc_mean"] for r in summary][::-1]
    stds = [r["test_acc_std"] for r in summary][::-1]
    colours = ["tab:green" if n == "fast" else "tab:grey" if n == "original" else "tab:blue"
               for n in names]
    ax.barh(names, means, xerr=stds, color=colours, alpha=0.8, capsize=3)
    low = min(means) - max(stds, default=0)
    ax.set_xlim(max(0.0, low - 5), min(100.0, max(means) + 4))
    full = next((r["test_acc_mean"] for r in summary if r["variant"] == "fast"), None)
    if full is not None:
        ax.axvline(full, color="tab:green", ls="--", lw=1)
    for y, r in enumerate(summary[::-1]):
        if r.get("vs_fast") is not None and r["variant"] != "fast":
            ax.text(r["test_acc_mean"] + r["test_acc_std"] + 0.2, y, f"{r['vs_fast']:+.2f}",
                    va="center", fontsize=8)
    seeds = max((r["seeds"] for r in summary), default=1)
    ax.set_xlabel(f"test accuracy, % (mean over {seeds} seed{'s' if seeds > 1 else ''})")
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- attribution


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
        img = _hwc(images[i])
        top.imshow(img, interpolation="nearest")
        top.set_title(titles[i], fontsize=8)
        bottom.imshow(img, interpolation="nearest")
        heat = bottom.imshow(maps[i].numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                             interpolation="bilinear")
    if heat is not None:
        fig.colorbar(heat, ax=axes, shrink=0.5, label="Grad-CAM (1 = strongest)")
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- robustness


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


def plot_corruption_curves(rows: Sequence[dict]) -> Figure:
    """Accuracy (%) against severity (0 = clean … 5), one line per corruption and the mean over
    corruptions as a thick black line; one panel per model, sharing the y axis."""
    table = _corruption_table(rows)
    if not table:
        raise ValueError("no rows to plot: run cifar_lib.robustness.corruption_accuracy first")
    corruptions = list(dict.fromkeys(c for m in table.values() for c in m["grid"]))
    colours = {c: f"C{i % 10}" for i, c in enumerate(corruptions)}
    fig = Figure(figsize=(0.8 + 4.4 * len(table), 4.6), layout="constrained")
    axes = fig.subplots(1, len(table), squeeze=False, sharey=True)[0]
    for ax, (name, m) in zip(axes, table.items()):
        clean = m["clean"]
        for c, by_sev in m["grid"].items():
            sev = sorted(by_sev)
            x = ([0] if clean is not None else []) + sev
            y = ([clean] if clean is not None else []) + [by_sev[s] for s in sev]
            ax.plot(x, y, marker="o", markersize=3, linewidth=1.2, color=colours[c], label=c)
        sev = sorted({s for by in m["grid"].values() for s in by})
        mean = [np.mean([by[s] for by in m["grid"].values() if s in by]) for s in sev]
        ax.plot(([0] if clean is not None else []) + sev,
                ([clean] if clean is not None else []) + mean, color="black", linewidth=3.5,
                label="mean", zorder=5)
        ax.set_xticks(range(0, 6), ["clean", "1", "2", "3", "4", "5"])
        ax.set_xlabel("severity")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{name}: clean {clean:.1f}% → {_mean_corrupted(m['grid']):.1f}% corrupted"
                     if clean is not None else name, fontsize=10)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def plot_corruption_examples(image, corruptions: Sequence[str] | None = None,
                             severities: Sequence[int] = (1, 2, 3, 4, 5), seed: int = 0
                             ) -> Figure:
    """One uint8 image 3×H×W under each corruption (rows) at each severity (columns), the
    clean image first: what ``bench robustness`` feeds the networks."""
    from .corruptions import CORRUPTIONS, corrupt
    names = list(CORRUPTIONS if corruptions is None else corruptions)
    batch = torch.as_tensor(image)[None]
    fig = Figure(figsize=(1.2 * (len(severities) + 1), 1.25 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), len(severities) + 1))
    for r, name in enumerate(names):
        views = [batch[0]] + [corrupt(batch, name, s, seed=seed)[0] for s in severities]
        for col, (ax, view) in enumerate(zip(axes[r], views)):
            ax.imshow(_hwc(view))
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8)
            if r == 0:
                ax.set_title("clean" if col == 0 else f"severity {severities[col - 1]}",
                             fontsize=8)
    return fig
