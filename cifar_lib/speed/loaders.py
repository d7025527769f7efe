"""Data pipeline: one epoch of training batches, ours against the original's torchvision DataLoader.

    python -m cifar_lib bench data [--batch-size 128] [--workers 2] [--limit N] [--out FILE.json]

Side by side in one run: torchvision's CIFAR10 dataset + DataLoader with ToTensor + Normalize
(the original notebook's pipeline, ``original_pipeline``) and ``BatchIterator`` (plain, and with
flip + translate). Prints a markdown table of images/s and writes a JSON record.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..batches import HALF_MEAN_STD, BatchIterator
from ..data import CLASSES, load_cifar10, resolve_root


def original_pipeline(root: str | Path | None, batch_size: int = 128, workers: int = 2,
                      limit: int | None = None) -> torch.utils.data.DataLoader:
    """The original notebook's input pipeline: PIL images → ToTensor → Normalize(0.5, 0.5),
    shuffled by a torchvision ``DataLoader`` with ``workers`` processes (over the first ``limit``
    training images only, when given). Yields float32 N×3×32×32 images and int64 N labels, on
    the CPU."""
    from torchvision import datasets, transforms

    class CIFAR10(datasets.CIFAR10):
        # Our copy of the files differs byte-wise from the official tarball (see shared/README),
        # so torchvision's md5 check would reject it; the decoding is the same.
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = list(CLASSES)
            self.class_to_idx = {name: i for i, name in enumerate(CLASSES)}

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*HALF_MEAN_STD)])
    dataset = CIFAR10(str(resolve_root(root)), train=True, download=False, transform=tf)
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       num_workers=workers)


def time_epoch(batches) -> tuple[float, int]:
    """(seconds, images) to draw every batch of one epoch from an iterable of (x, y)."""
    t0, n = time.perf_counter(), 0
    for x, _ in batches:
        n += len(x)
    return time.perf_counter() - t0, n


def run(root=None, batch_size: int = 128, workers: int = 2, limit: int | None = None,
        download: bool = False) -> list[dict]:
    """Rows: pipeline, seconds, images, images_per_second, speedup_vs_original (one epoch of the
    first ``limit`` training images, all when None), then the time to load all of CIFAR-10
    (``download``: fetch it first if it is missing)."""
    if download:
        load_cifar10(root, download=True)  # not timed: the timed load below reads the files
    t0 = time.perf_counter()
    train, test = load_cifar10(root)
    load_seconds = time.perf_counter() - t0
    n_all = len(train) + len(test)
    train = train.subset(limit)
    rows = []

    def record(name, seconds, n):
        rows.append({"pipeline": name, "seconds": round(seconds, 3), "images": n,
                     "images_per_second": round(n / seconds, 1)})

    loader = original_pipeline(root, batch_size, workers, limit)
    record(f"torchvision DataLoader, {workers} workers (original)", *time_epoch(loader))
    record("BatchIterator, no augmentation", *time_epoch(BatchIterator(train, batch_size)))
    record("BatchIterator, flip + translate 2",
           *time_epoch(BatchIterator(train, batch_size, flip="alternating", translate=2)))
    for row in rows:
        row["speedup_vs_original"] = round(row["images_per_second"] / rows[0]["images_per_second"], 1)
    rows.append({"pipeline": f"load_cifar10 (all {n_all:,} images)",
                 "seconds": round(load_seconds, 3), "images": n_all,
                 "images_per_second": round(n_all / load_seconds, 1), "speedup_vs_original": None})
    return rows
