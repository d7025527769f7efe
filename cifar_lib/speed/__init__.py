"""Measuring speed honestly, on any device: the clock (``clock``), training steps and the
wait before a long run (``steps``), inference latency and throughput (``latency``), and the
input pipeline (``loaders``). The lessons call these directly; ``cifar_lib.bench`` wraps them
as benchmarks that write records.
"""
from .clock import synced_clock
from .steps import estimate_fit_seconds

__all__ = ["synced_clock", "estimate_fit_seconds"]
