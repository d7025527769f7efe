"""Figures of lesson 01 (training): the data, the fast recipe's ideas (whitening, augmentation,
label smoothing, the learning rates of every parameter group, test-time views), training curves
against epochs and seconds, and what each trick buys."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..ablation import difference_error
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


_PATCH_LABELS = [f"{c} {p}" for c in "RGB" for p in ("↖", "↗", "↙", "↘")]  # (c, kh, kw) order


def plot_whitening(layer, images: torch.Tensor) -> Figure:
    """A fitted ``Whitening`` layer: its 12 filters as 2×2 colour images (grey = 0, each scaled to
    its own range, faintest patch direction first, titled with that direction's variance); the
    12×12 covariance of the 2×2 patches of ``images`` (normalised float N×3×H×W), indexed by
    pixel and colour; and the covariance of the layer's first 12 output channels on the same
    images, indexed by whitened direction (d1 the faintest … d12 the strongest)."""
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
        ax.set_title(f"d{k + 1}: var {variances[k]:.2g}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    top.suptitle("the 12 whitening filters (2×2 pixels, RGB; grey = 0): directions d1 (faintest) "
                 "to d12 (strongest: the average brightness)", fontsize=10)
    directions = [f"d{k + 1}" for k in range(12)]
    panels = ((before, _PATCH_LABELS, "before: covariance of 2×2 image patches\n(12 numbers "
               "each: colour and pixel)"),
              (after, directions, "after: covariance of the 12 whitened directions\n(the "
               "layer's first 12 output channels)"))
    for ax, (cov, labels, title) in zip(bottom.subplots(1, 2), panels):
        lim = float(cov.abs().max())
        im = ax.imshow(cov.cpu().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        bottom.colorbar(im, ax=ax, shrink=0.85)
        ax.set_xticks(range(12), labels, fontsize=7, rotation=90)
        ax.set_yticks(range(12), labels, fontsize=7)
        ax.set_title(title, fontsize=10)
    return fig


def learning_rates(cfg, steps_per_epoch: int) -> dict[str, np.ndarray]:
    """The learning rate at every step of a run of ``cfg``, per parameter group, as
    ``train.make_optimizer`` and ``train_step`` set them: {group name: rates, one per step}.
    Muon recipes: the conv filters (Muon), the head, the BatchNorm biases and the whitening bias
    (on its own ``whiten_bias_epochs`` schedule, 0 after); SGD recipes: weights and biases;
    Adam: one rate."""
    from ..train import lr_multiplier
    total = cfg.epochs * steps_per_epoch
    steps = range(total)

    def rates(peak: float, over: int = total) -> np.ndarray:
        return np.array([peak * lr_multiplier(cfg, s, over) for s in steps])

    bias = cfg.lr * cfg.bias_lr_scale
    if cfg.optimizer == "muon":
        out = {"conv filters (Muon)": rates(cfg.muon_lr), "head (SGD)": rates(cfg.lr),
               "BatchNorm biases (SGD)": rates(bias)}
        if cfg.whiten_bias_epochs:
            over = cfg.whiten_bias_epochs * steps_per_epoch
            out["whitening bias (SGD)"] = np.array(
                [bias * lr_multiplier(cfg, s, over) if s < over else 0.0 for s in steps])
        return out
    if cfg.optimizer == "sgd":
        return {"weights (SGD)": rates(cfg.lr), "biases (SGD)": rates(bias)}
    return {f"all weights ({cfg.optimizer})": rates(cfg.lr)}


def plot_learning_rates(cfg, steps_per_epoch: int) -> Figure:
    """``learning_rates`` of every parameter group over a run of ``cfg``, on a logarithmic axis
    (the groups' rates differ by orders of magnitude), each labelled with its peak; epochs along
    the top."""
    groups = learning_rates(cfg, steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    for (name, lrs), colour in zip(groups.items(),
                                   ("tab:red", "tab:blue", "tab:green", "tab:purple")):
        shown = np.where(lrs > 0, lrs, np.nan)  # a rate of 0 has no place on a log axis
        ax.plot(range(total), shown, color=colour, label=f"{name}: peak {lrs.max():.3g}")
    ax.set_yscale("log")
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch,
                                               lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    ax.set_xlim(0, total)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"learning rate of each parameter group over {total:,} steps ({cfg.epochs} "
                 f"epochs × {steps_per_epoch} steps of {cfg.batch_size})", fontsize=10)
    return fig


def plot_training_curves(histories, crop_epochs: int = 0) -> Figure:
    """Loss and accuracy (train and test) of one history or a {name: history} dict, against
    epochs (top row) and against seconds of training (bottom row: ``train_seconds`` at the end
    of each epoch). With ``crop_epochs``, a dotted line where training moves from small crops
    to whole images."""
    if not isinstance(histories, dict):
        histories = {"": histories}
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for name, history in histories.items():
        label = f"{name} " if name else ""
        for split, style in (("train", "--"), ("test", "-")):
            rows = [h for h in history if f"{split}_loss" in h]
            if not rows:
                continue
            for r, x_key in enumerate(("epoch", "train_seconds")):
                x = [h[x_key] for h in rows]
                axes[r, 0].plot(x, [h[f"{split}_loss"] for h in rows], style, marker="o",
                                label=f"{label}{split}")
                axes[r, 1].plot(x, [100 * h[f"{split}_acc"] for h in rows], style, marker="o",
                                label=f"{label}{split}")
    if crop_epochs:
        for ax in axes[0]:
            ax.axvline(crop_epochs + 0.5, color="gray", linestyle=":", linewidth=1)
            ax.annotate("whole images from here", (crop_epochs + 0.5, 0.02),
                        xycoords=("data", "axes fraction"), xytext=(3, 0),
                        textcoords="offset points", fontsize=7, color="gray")
    for r, xlabel in enumerate(("epoch", "seconds of training")):
        axes[r, 0].set(xlabel=xlabel, ylabel="loss", title=f"loss by {xlabel.split()[0]}")
        axes[r, 1].set(xlabel=xlabel, ylabel="accuracy (%)",
                       title=f"accuracy by {xlabel.split()[0]}")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


class LiveTrainingCurves:
    """A ``fit`` callback that redraws ``plot_training_curves`` in place after every epoch.

    In Jupyter and Colab the figure updates in one output; elsewhere it does nothing visible.
    """

    def __init__(self, crop_epochs: int = 0):
        self.history: list[dict] = []
        self.crop_epochs = crop_epochs
        self._handle = None

    def __call__(self, row: dict) -> None:
        self.history.append(row)
        fig = plot_training_curves(self.history, crop_epochs=self.crop_epochs)
        try:
            from IPython.display import display
        except ImportError:
            return
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def plot_ablation_differences(summary: Sequence[dict], *, full: str = "fast",
                              full_label: str | None = None, timed: bool = True,
                              title: str = "what each trick buys") -> Figure:
    """The ablation summary (``summarize`` rows: variant, test_acc_mean, test_acc_std, seeds,
    and optionally seconds_median) as differences to the full recipe's accuracy (row ``full``), in
    points, each bar from 0 with its error bar (``ablation.difference_error``); a bar to
    the left means removing that trick cost accuracy. With seconds (and ``timed``: they
    compare), a second panel shows each variant's training time as a multiple of the full
    recipe's: what the trick saves or costs in time. The full recipe itself is not drawn; its
    accuracy is in the title."""
    base = next(r for r in summary if r["variant"] == full)
    rows = [r for r in summary if r["variant"] != full][::-1]
    diffs = [r["test_acc_mean"] - base["test_acc_mean"] for r in rows]
    errors = [difference_error(r, base) for r in rows]
    timed = timed and all(r.get("seconds_median") for r in (base, *rows))
    fig = Figure(figsize=(11 if timed else 8, 0.45 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True, width_ratios=(3, 1)) if timed else [fig.subplots()]
    ax = axes[0]
    colours = ["tab:grey" if r["variant"] == "original" else
               "tab:red" if d < 0 else "tab:blue" for r, d in zip(rows, diffs)]
    ax.barh([r["variant"] for r in rows], diffs, xerr=errors, color=colours, alpha=0.8,
            capsize=3)
    ax.axvline(0, color="black", linewidth=1)
    low = min([0.0, *[d - e for d, e in zip(diffs, errors)]])
    high = max([0.0, *[d + e for d, e in zip(diffs, errors)]])
    pad = 0.2 * (high - low or 1)  # room for the labels
    ax.set_xlim(low - pad, high + pad)
    for y, (d, e) in enumerate(zip(diffs, errors)):
        gap = e + 0.02 * (high - low or 1)
        ax.text(d + (gap if d >= 0 else -gap), y, f"{d:+.2f}", va="center",
                ha="left" if d >= 0 else "right", fontsize=8)
    seeds = max((r["seeds"] for r in summary), default=1)
    ax.set_xlabel(f"difference to the full recipe's test accuracy, points (mean of {seeds} "
                  f"seed{'s' if seeds > 1 else ''} ± spread)")
    name = full_label or full
    ax.set_title(f"{title}: {name} with every trick reached {base['test_acc_mean']:.2f}%; "
                 f"each bar removes one", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    if timed:
        ratios = [r["seconds_median"] / base["seconds_median"] for r in rows]
        axes[1].barh(range(len(rows)), ratios, color="tab:grey", alpha=0.7)
        axes[1].axvline(1, color="black", linewidth=1)
        for y, ratio in enumerate(ratios):
            axes[1].text(ratio, y, f" {ratio:.2f}×", va="center", fontsize=8)
        axes[1].set_xlim(0, 1.25 * max([1.0, *ratios]))
        axes[1].set_xlabel("training time ÷ full recipe's")
        axes[1].set_title("time", fontsize=10)
        axes[1].grid(alpha=0.3, axis="x")
    return fig
