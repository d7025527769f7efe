"""Figures for "none of these" (cifar_lib.ood): the open-set record, score by score."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .files import read_json

RECORD = Path(__file__).resolve().parent / "records" / "open_set.json"


def read_open_set(path: str | Path = RECORD) -> dict:
    """The committed open-set record (``python -m cifar_lib bench open-set`` writes it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no open-set record at {path}: run `python -m cifar_lib bench "
                                f"open-set` to measure one")
    return read_json(path)


def plot_open_set(record: dict, metric: str = "auroc"):
    """Grouped bars: ``metric`` ('auroc' or 'fpr_at_95_tpr') per score (colours) for each
    model × unknowns pair of the record's rows. Returns the Figure."""
    rows = record["rows"]
    scores = list(dict.fromkeys(r["score"] for r in rows))
    groups = list(dict.fromkeys((r["model"], r["unknowns"]) for r in rows))
    value = {(r["model"], r["unknowns"], r["score"]): r[metric] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 3.6))
    width = 0.8 / len(scores)
    x = np.arange(len(groups))
    for i, s in enumerate(scores):
        ax.bar(x + (i - (len(scores) - 1) / 2) * width,
               [value.get((m, u, s), np.nan) for m, u in groups], width, label=s)
    ax.set_xticks(x, [f"{m}\n{u}" for m, u in groups], fontsize=8)
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
