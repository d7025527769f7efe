"""Reading the clock honestly: on a GPU, wait for the queued work first.

A CUDA call returns as soon as its kernels are *queued*; a clock read right after it measures the
launch, not the work. Every benchmark reads the clock through ``synced_clock``.
"""
from __future__ import annotations

import time

import torch

from ..device import sync

_now = time.perf_counter  # the clock (a module attribute so that tests can watch it being read)


def synced_clock(device: torch.device | str) -> float:
    """Seconds (``time.perf_counter``) read after ``sync(device)``."""
    sync(device)
    return _now()
