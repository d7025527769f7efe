"""Figures of lesson 02 (speed): inference throughput by batch size, training throughput by
device."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator


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
        one_call = method.startswith(("original", "seed"))  # "seed": records made before the rename
        ax.errorbar(x, y, yerr=[y - low, high - y], marker="x" if one_call else "o", markersize=4,
                    linestyle=":" if one_call else ("-" if device == "cpu" else "--"), capsize=2,
                    label=f"{device} {variant}" + (" (the original's timing)" if one_call else ""))
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


def plot_training_throughput(rows: Sequence[dict], *,
                             title: str = "training throughput") -> Figure:
    """Training images/s (log scale) as bars: one group per recipe, one bar per device, each
    GPU bar labelled with its speed-up over the same recipe's CPU bar. A device that was not
    measured (no GPU on this machine, an error) gets no bar, only its status written in its
    place. ``rows``: ``cifar_lib.speed.steps.run``'s rows."""
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
