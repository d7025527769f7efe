"""Figures for the training lesson: the data, and loss/accuracy curves (also live)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .data import CifarSplit


def image_grid(split: CifarSplit, n: int = 32, cols: int = 8, seed: int = 0) -> Figure:
    """A grid of ``n`` random images with their labels."""
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    rows = -(-len(idx) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx.tolist()):
        ax.imshow(split.images[i].permute(1, 2, 0).numpy())
        ax.set_title(split.classes[split.labels[i]], fontsize=8)
    fig.tight_layout()
    return fig


def class_counts(split: CifarSplit) -> dict[str, int]:
    """Images per class, by name."""
    counts = torch.bincount(split.labels, minlength=len(split.classes)).tolist()
    return dict(zip(split.classes, counts))


def class_counts_figure(*splits: tuple[str, CifarSplit]) -> Figure:
    """Side-by-side bar charts of images per class, one per (name, split)."""
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3), squeeze=False)
    for ax, (name, split) in zip(axes.flat, splits):
        counts = class_counts(split)
        ax.bar(list(counts), list(counts.values()), color="tab:blue")
        ax.set_title(f"{name}: {len(split):,} images")
        ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig


def curves_figure(histories: dict[str, Sequence[dict]] | Sequence[dict]) -> Figure:
    """Loss and accuracy per epoch (train and test) for one history or a {name: history} dict."""
    if not isinstance(histories, dict):
        histories = {"": histories}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
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
    fig.tight_layout()
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
        fig = curves_figure(self.history)
        try:
            from IPython.display import display
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
        except ImportError:
            pass
        plt.close(fig)
