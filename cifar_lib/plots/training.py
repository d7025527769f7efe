"""Figures of lesson 01 (training): the data, training curves, the fast recipe's ideas, and
what each trick buys."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .common import class_name, hwc, show


def image_grid(split, n: int = 32, cols: int = 8, seed: int = 0) -> Figure:
    """A grid of ``n`` random images of a ``CifarSplit`` with their labels."""
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    rows = -(-len(idx) // cols)
    fig = Figure(figsize=(1.4 * cols, 1.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx.tolist()):
        ax.imshow(hwc(split.images[i]))
        ax.set_title(split.classes[split.labels[i]], fontsize=8)
    return fig


def plot_class_counts(*splits) -> Figure:
    """Side-by-side bar charts of images per class, one per (name, split)."""
    from ..data import class_counts
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
    from ..train import lr_schedule
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


def plot_augmented_batch(split, cfg, n: int = 8, epochs: int = 2) -> Figure:
    """The first ``n`` images of ``split`` as they are (top row) and as ``BatchIterator`` hands
    them to the model with ``cfg``'s flip and translate in each of ``epochs`` epochs (one row
    each), titled with each image's draws: 'flip' when mirrored and the shift (dy, dx), which
    moves the content up by dy and left by dx (reflect-filled)."""
    from ..batches import BatchIterator, normalize
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
            ax.imshow(show(x[i], cfg.mean, cfg.std), interpolation="nearest")
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

    from ..train import smoothed_targets
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
    from ..batches import normalize
    from ..inference import tta_views
    x = normalize(torch.as_tensor(image)[None], mean, std)
    views = tta_views(x, level)
    fig = Figure(figsize=(1.9 * len(views), 2.9), layout="constrained")
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    averaged = 0
    if model is not None:
        device, was_training = next(model.parameters()).device, model.training
        model.eval()
    for ax, (name, weight, v) in zip(axes, views):
        ax.imshow(show(v[0], mean, std), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"{name}\nweight {weight:g}"
        if model is not None and label is not None:
            with torch.no_grad():
                logits = model(v.to(device)).float().cpu()
            averaged = averaged + weight * logits
            title += f"\np({class_name(classes, label)}) = {logits.softmax(1)[0, label]:.0%}"
        ax.set_title(title, fontsize=8)
    if model is not None:
        model.train(was_training)
    heading = f"test-time augmentation, level {level}: {len(views)} views"
    if model is not None and label is not None:
        heading += (f"; the weighted average of their logits gives "
                    f"p({class_name(classes, label)}) = {averaged.softmax(1)[0, label]:.0%}")
    fig.suptitle(heading, fontsize=10)
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
