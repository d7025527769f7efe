"""Inference: throughput and latency per batch size, CPU and GPU, measured properly.

Measured as a benchmark by ``python -m cifar_lib bench inference``.

The original notebook timed one call with ``time.time()``: no warm-up (the first call pays for
memory allocation, kernel selection, CUDA context creation) and a single sample. Here every
measurement warms up first, then ``torch.utils.benchmark.Timer`` repeats the call in blocks
(synchronising CUDA around each block) and we report the median and the quartiles. The original's
method is kept beside it as a row of its own, so the difference is visible; on a GPU it is
synchronised before the clock is read (otherwise it would time only the *queueing* of the
kernels, not the work).

Rows are plain dicts (one per device × variant × batch size × method): ``records.markdown_table``
prints them (with ``COLUMNS``), ``cifar_lib.plots.plot_throughput`` draws them, and
``records.write_record`` saves them as JSON.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_model
from ..device import cpu_has_native_bf16, cpu_model, precision_name, sync
from ..errors import UsageError
from ..models import count_parameters

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512, 1024)
# Small batches: where bf16 is emulated (no native bf16), autocast is many times slower.
QUICK_BATCH_SIZES = (1, 4, 8)
# Where the CPU has no native bf16, autocast emulates it, many times slower than fp32: the
# small batches show that; timing the large ones would take most of a lesson's time.
EMULATED_BF16_MAX_BATCH = 32
EMULATED_BF16 = "skipped: bf16 is emulated on this CPU (no native bf16), too slow to time here"


BASELINE = "no_grad"


# Each variant changes one thing from the baseline (fp32, NCHW, eager, under no_grad).
VARIANTS = ("grad_enabled", "no_grad", "inference_mode", "channels_last", "autocast", "compile")


NO_GPU = "no GPU available"


ORIGINAL_METHOD = "original: 1 call, time.time()"


TIMER_METHOD = "benchmark.Timer"


ROW_KEYS = ("device", "device_name", "threads", "variant", "dtype", "method", "batch_size",
            "status", "median_ms", "q25_ms", "q75_ms", "iqr_ms", "images_per_s",
            "images_per_s_low", "images_per_s_high", "speedup", "measurements", "first_call_ms")


def parse_batch_sizes(text: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]; a ValueError with one clear sentence otherwise."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"batch sizes must be positive integers separated by commas, "
                         f"e.g. 1,8,32, got {text!r}")
    return sizes


def _devices(device: str | Sequence[str]) -> list[str]:
    """'all' → CPU and CUDA (the CUDA rows say when there is no GPU); 'auto' → the GPU if there
    is one, else the CPU (the device training would use, of those this benchmark times); or
    one/several names."""
    if isinstance(device, str):
        if device == "all":
            return ["cpu", "cuda"]
        if device == "auto":
            return ["cuda" if torch.cuda.is_available() else "cpu"]
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise UsageError(f"unknown benchmark device {device!r}: use 'all', 'auto', 'cpu' or "
                             f"'cuda'")
        return [device]
    return list(device)


def _row(**values) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(values)
    return row


def _stats(times_s: list[float], batch_size: int) -> dict:
    """Median and quartiles of per-call times (seconds) → ms and images/s."""
    t = np.asarray(times_s) * 1e3
    q25, med, q75 = (float(v) for v in np.percentile(t, [25, 50, 75]))
    return {"median_ms": med, "q25_ms": q25, "q75_ms": q75, "iqr_ms": q75 - q25,
            "images_per_s": batch_size / med * 1e3,
            "images_per_s_low": batch_size / q75 * 1e3, "images_per_s_high": batch_size / q25 * 1e3,
            "measurements": len(t)}


def measure(fn: Callable[[], object], *, warmup: int = 3, min_run_time: float = 0.3,
            min_repeats: int = 5, num_threads: int | None = None) -> tuple[list[float], float]:
    """(per-call times in seconds, first-call seconds) for ``fn`` after ``warmup`` calls.

    ``blocked_autorange`` picks how many calls make a block (so timer overhead is negligible)
    and runs blocks for ``min_run_time`` seconds; slow calls get extra blocks until there are
    ``min_repeats`` values, so the quartiles mean something. ``num_threads`` matters:
    ``benchmark.Timer`` defaults to ONE thread, which would understate CPU speed.
    """
    t0 = time.perf_counter()
    fn()  # the first call (compilation, allocation, kernel selection) is reported separately
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    # Imported here: torch.utils.benchmark pulls in cpp_extension, which logs a CUDA warning on
    # GPU-less machines with a CUDA build of torch; the CLI must not print it for every command.
    from torch.utils import benchmark
    timer = benchmark.Timer("fn()", globals={"fn": fn},
                            num_threads=num_threads or torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    times = list(m.times)  # seconds per call (block time / calls per block)
    while len(times) < min_repeats:
        times.extend(timer.timeit(m.number_per_run).times)
    return times, first


def _variant_fn(variant: str, model: nn.Module, x: torch.Tensor, device: torch.device,
                compiled: dict) -> tuple[Callable[[], object], str]:
    """The callable to time for ``variant`` and the dtype it computes in."""
    if variant == "grad_enabled":  # what a forgotten no_grad costs: autograd records the graph
        def fn():
            with torch.enable_grad():
                return model(x)
        return fn, "fp32"
    if variant == "inference_mode":  # no_grad plus no version counters / view tracking
        def fn():
            with torch.inference_mode():
                return model(x)
        return fn, "fp32"
    if variant == "channels_last":  # NHWC: the layout oneDNN / cuDNN kernels prefer
        m = compiled.setdefault("channels_last", copy.deepcopy(model).to(
            memory_format=torch.channels_last))
        xc = x.contiguous(memory_format=torch.channels_last)

        def fn():
            with torch.no_grad():
                return m(xc)
        return fn, "fp32"
    if variant == "autocast":  # bf16 on CPU, fp16 on GPU (every GPU since 2017 is fast at it)
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

        def fn():
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
                return model(x)
        return fn, precision_name(dtype)
    if variant == "compile":  # compiles on the first call (slow); errors surface there too
        m = compiled.setdefault("compile", torch.compile(model))

        def fn():
            with torch.no_grad():
                return m(x)
        return fn, "fp32"
    if variant == BASELINE:
        def fn():
            with torch.no_grad():
                return model(x)
        return fn, "fp32"
    raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")


def _error(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {first}"[:300]


def _bench_device(model: nn.Module, device_name: str, batch_sizes: Sequence[int],
                  variants: Sequence[str], original_method: bool, timing: dict,
                  log: Callable[[str], None]) -> list[dict]:
    """All rows for one device. The same code runs on CPU and CUDA."""
    device = torch.device(device_name)
    threads = torch.get_num_threads()
    base = {"device": device_name, "threads": threads}
    if device.type == "cuda" and not torch.cuda.is_available():
        rows = [_row(**base, variant=v,
                     method=TIMER_METHOD, batch_size=bs, status=NO_GPU)
                for v in variants for bs in batch_sizes]
        if original_method:
            rows += [_row(**base, variant=BASELINE, method=ORIGINAL_METHOD, batch_size=bs,
                          status=NO_GPU) for bs in batch_sizes]
        return rows
    base["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" \
        else cpu_model()
    model = copy.deepcopy(model).to(device).eval()  # never move or modify the caller's model
    gen = torch.Generator().manual_seed(0)
    inputs = {bs: torch.randn(bs, 3, 32, 32, generator=gen).to(device) for bs in batch_sizes}
    rows = []
    if original_method:
        # First, before anything has warmed up: what the original notebook measured, one call.
        for bs in batch_sizes:
            sync(device)  # the input's copy to the GPU is not part of the call
            start = time.time()
            with torch.no_grad():
                model(inputs[bs])
            sync(device)  # without it, a GPU call returns once queued: only the launch is timed
            seconds = time.time() - start
            rows.append(_row(**base, variant=BASELINE, dtype="fp32", method=ORIGINAL_METHOD,
                             batch_size=bs, status="ok", median_ms=seconds * 1e3,
                             images_per_s=bs / seconds if seconds > 0 else math.inf,
                             measurements=1, first_call_ms=seconds * 1e3))
    prepared: dict = {}  # channels_last / compiled copies, made once per device
    emulated = device.type == "cpu" and not cpu_has_native_bf16()
    for variant in variants:
        for i, bs in enumerate(batch_sizes):
            row = _row(**base, variant=variant, method=TIMER_METHOD, batch_size=bs)
            if variant == "autocast" and emulated and bs > EMULATED_BF16_MAX_BATCH:
                rows.append({**row, "dtype": precision_name(torch.bfloat16),
                             "status": EMULATED_BF16})
                continue
            try:
                fn, row["dtype"] = _variant_fn(variant, model, inputs[bs], device, prepared)
                times, first = measure(fn, **timing)
                row.update(_stats(times, bs), status="ok", first_call_ms=first * 1e3)
            except Exception as e:  # a variant this machine can't do is a result, not a crash
                row["status"] = _error(e)
                if variant == "compile":  # don't pay for (or repeat) a failing compile per size
                    rows.append(row)
                    rows += [_row(**base, variant=variant, method=TIMER_METHOD, batch_size=b,
                                  status=row["status"]) for b in batch_sizes[i + 1:]]
                    break
            rows.append(row)
            log(f"{device_name:5s} {variant:15s} batch {bs:5d}: {row['status']}"
                + (f", {row['images_per_s']:.0f} img/s" if row["status"] == "ok" else ""))
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """speedup = throughput / the baseline's throughput (same device and batch size, Timer)."""
    base = {(r["device"], r["batch_size"]): r["images_per_s"] for r in rows
            if r["variant"] == BASELINE and r["method"] == TIMER_METHOD and r["status"] == "ok"}
    for r in rows:
        ref = base.get((r["device"], r["batch_size"]))
        if r["status"] == "ok" and r["method"] == TIMER_METHOD and ref:
            r["speedup"] = r["images_per_s"] / ref


def benchmark_inference(model: nn.Module, *, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                        device: str | Sequence[str] = "all", variants: Sequence[str] | None = None,
                        compile: bool = False, original_method: bool = True, warmup: int = 3,
                        min_run_time: float = 0.3, min_repeats: int = 5, threads: int | None = None,
                        log: Callable[[str], None] | None = None) -> list[dict]:
    """Time ``model`` (float N×3×32×32 → N×10) on random batches; returns one dict per row.

    device: 'all' (the CPU and CUDA; without a GPU every CUDA row has status
    "no GPU available"), 'auto' (the GPU if there is one, else the CPU), 'cpu' or 'cuda'.
    variants: default every one in VARIANTS except 'compile', which is added only with
    ``compile=True`` (it takes tens of seconds per batch size on a CPU).
    Row keys: ROW_KEYS; times in ms per batch, throughput in images/s; 'speedup' is relative to
    the 'no_grad' fp32 row of the same device and batch size; 'status' is 'ok', NO_GPU or
    'error: ...' (e.g. when torch.compile finds no compiler). threads: CPU threads to use
    (torch.set_num_threads, restored afterwards); None keeps the current setting. On a machine
    whose cores are busy with something else, fewer threads can be far faster: OpenMP threads
    wait for each other at every operation.
    """
    if variants is None:
        variants = [v for v in VARIANTS if v != "compile" or compile]
    elif compile and "compile" not in variants:
        variants = [*variants, "compile"]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(VARIANTS)}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise UsageError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    timing = dict(warmup=warmup, min_run_time=min_run_time, min_repeats=min_repeats)
    rows = []
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for dev in _devices(device):
            rows += _bench_device(model, dev, list(batch_sizes), list(variants), original_method,
                                  timing, log or (lambda s: None))
    finally:
        torch.set_num_threads(before)
    _add_speedups(rows)
    return rows


def benchmark_run(run_dir, *, quick: bool = False, **kwargs) -> tuple[list[dict], dict]:
    """Benchmark a run folder's model. ``quick``: 3 batch sizes and short timings (for CI).

    Returns (rows, model info: run, model name, parameters).
    """
    model, ckpt = load_model(run_dir, "cpu")
    if quick:
        kwargs = {"batch_sizes": QUICK_BATCH_SIZES, "warmup": 1, "min_run_time": 0.05,
                  "min_repeats": 3, **kwargs}
    info = {"run": str(run_dir), "model": ckpt["model"], "model_kwargs": ckpt["model_kwargs"],
            "parameters": count_parameters(model)}
    return benchmark_inference(model, **kwargs), info
