"""Accuracy under common corruptions (CIFAR-10-C style), for one or several runs.

``corruption_accuracy`` corrupts the test images once per corruption × severity (with
``cifar_lib.corruptions.corrupt``) and measures every model on the same corrupted images, so the
models are compared on identical inputs; ``summarize`` reduces the rows to clean accuracy, the
mean over all corruptions × severities (the paper's headline, before its normalisation by
AlexNet's errors, which we do not have) and a mean per corruption.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import records
from .checkpoint import LoadedModel, load_run
from .corruptions import CORRUPTIONS, corrupt
from .data import CifarSplit, load_cifar10_test
from .device import select_device
from .errors import UsageError
from .inference import accuracy, predict_logits
from .pretrained import RUNS

CLEAN = "clean"
SEVERITY_LEVELS = (1, 2, 3, 4, 5)


def _runs(run) -> list:
    """One run, or a list/tuple of runs (a (model, ckpt) pair counts as one run)."""
    if isinstance(run, (list, tuple)) and not (len(run) == 2 and isinstance(run[0], nn.Module)):
        return list(run)
    return [run]


def model_name(lm: LoadedModel) -> str:
    """How a model is named in the rows: its run folder's name ('fast'), else its architecture."""
    return lm.folder.name if lm.folder is not None else lm.name


def corruption_accuracy(run, test: CifarSplit, *, corruptions: Sequence[str] = CORRUPTIONS,
                        severities: Sequence[int] = SEVERITY_LEVELS, seed: int = 0,
                        tta_level: int = 0, device: str = "auto", batch_size: int = 500,
                        log: Callable[[str], None] | None = None, progress: bool = True
                        ) -> list[dict]:
    """Accuracy (0..1) of each run on ``test`` (uint8 N×3×32×32) clean and under each corruption.

    run: a run folder, checkpoint, ``load_model`` pair or ``LoadedModel``, or a list of them.
    Rows, model by model: {model, corruption, severity, accuracy, images}; first a 'clean' row
    with severity 0, then one per corruption × severity. ``tta_level`` is the same for every
    model, 0 by default: TTA level 2 costs 6 forward passes per image × 51 test sets, and a
    model's own TTA would favour the model that has it rather than measure robustness.
    ``progress``: a progress bar over the corrupted test sets.
    """
    if not corruptions or not set(corruptions) <= set(CORRUPTIONS):
        raise ValueError(f"corruptions must be some of {', '.join(CORRUPTIONS)}, "
                         f"got {list(corruptions)}")
    if not severities or not set(severities) <= set(SEVERITY_LEVELS):
        raise ValueError(f"severities must be some of 1..5, got {list(severities)}")
    dev = select_device(device)
    # a LoadedModel passed in stays where it is: predict_logits feeds it on its own device
    models = [load_run(r, dev) for r in _runs(run)]
    names = [model_name(lm) for lm in models]
    if len(set(names)) < len(names):
        raise ValueError(f"two runs share a name ({', '.join(names)}): the rows could not tell "
                         f"them apart; put them in folders with different names")
    images = test.images.to(dev)  # corrupt where the model runs (JPEG and noise draws: CPU)
    results: dict[str, list[dict]] = {n: [] for n in names}

    def measure(x: torch.Tensor, corruption: str, severity: int) -> None:
        for name, lm in zip(names, models):
            logits = predict_logits(lm.model, x, lm.mean, lm.std, tta_level=tta_level,
                                    batch_size=batch_size)
            results[name].append({"model": name, "corruption": corruption, "severity": severity,
                                  "accuracy": accuracy(logits, test.labels), "images": len(x)})

    bar = tqdm(total=1 + len(corruptions) * len(severities), unit="test set", desc="corruptions",
               disable=not progress)
    measure(images, CLEAN, 0)
    bar.update()
    for corruption in corruptions:
        for severity in severities:
            measure(corrupt(images, corruption, severity, seed), corruption, severity)
            bar.update()
        if log:
            mean = {n: sum(r["accuracy"] for r in results[n][-len(severities):]) / len(severities)
                    for n in names}
            log(f"{corruption:15s} " + "  ".join(f"{n} {a:.1%}" for n, a in mean.items()))
    bar.close()
    return [row for n in names for row in results[n]]


def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """model → {clean, mean_corrupted, per_corruption: {corruption: mean over severities}}.

    Accuracies in 0..1; mean_corrupted is the mean over every corruption × severity row (None
    when there are none). Models keep the order of the rows.
    """
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["model"], {"clean": None, "mean_corrupted": None, "_by": {}})
        if r["corruption"] == CLEAN:
            s["clean"] = r["accuracy"]
        else:
            s["_by"].setdefault(r["corruption"], []).append(r["accuracy"])
    for s in out.values():
        by = s.pop("_by")
        every = [a for accs in by.values() for a in accs]
        s["mean_corrupted"] = sum(every) / len(every) if every else None
        s["per_corruption"] = {c: sum(accs) / len(accs) for c, accs in by.items()}
    return out


# The record ships inside the package (cifar_lib/records), so that 03_evaluate shows it on Colab.
RECORD = records.shipped("robustness")


DEFAULT_RUNS = (RUNS / "fast", RUNS / "original")


# 51 passes over the images per model: the first 2,000 test images keep a CPU run to minutes
# (each cell then has a 95% interval of about ±2 points); --images 10000 for all of them.
TEST_IMAGES = 2_000


QUICK_IMAGES = 200  # --quick: a smoke test


def _shown(path) -> str:
    """A run's path as a record shows it: relative to the current folder when inside it (the
    shipped runs from a checkout: cifar_lib/pretrained_runs/fast), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def run(runs, *, images: int = TEST_IMAGES, seed: int = 0, tta_level: int = 0,
        device: str = "auto", root=None, download: bool = False, log=None,
        progress: bool = True) -> dict:
    """The record's fields: rows (each with the run's path), summary, device, images, seconds.
    ``images``: the first N test images (10,000: all of them)."""
    if images < 1:
        raise UsageError(f"--images must be at least 1 (10000 is the whole test set), got {images}")
    dev = select_device(device)
    test = load_cifar10_test(root, download=download)
    test = test.subset(images)
    models = [load_run(r, dev) for r in runs]
    paths = {model_name(lm): _shown(r) for lm, r in zip(models, runs)}
    t0 = time.perf_counter()
    rows = corruption_accuracy(models, test, seed=seed, tta_level=tta_level, device=str(dev),
                               log=log, progress=progress)
    seconds = time.perf_counter() - t0
    rows = [{"model": r["model"], "run": paths[r["model"]], **r} for r in rows]
    return {"rows": rows, "summary": summarize(rows), "device": str(dev), "images": len(test),
            "seed": seed, "tta_level": tta_level, "seconds": seconds}


def read_record(path: str | Path = RECORD) -> dict:
    """The committed robustness record (``RECORD`` by default)."""
    return records.read_record(path, "robustness")


def table(rows: list[dict]) -> list[dict]:
    """One line per model × corruption: accuracy in % at each severity and their mean."""
    lines: dict[tuple, dict] = {}
    for r in rows:
        line = lines.setdefault((r["model"], r["corruption"]),
                                {"model": r["model"], "corruption": r["corruption"]})
        line[str(r["severity"]) if r["corruption"] != CLEAN else "mean"] = 100 * r["accuracy"]
    for line in lines.values():
        accs = [line[str(s)] for s in SEVERITY_LEVELS if str(s) in line]
        if accs:
            line["mean"] = sum(accs) / len(accs)
    return list(lines.values())
