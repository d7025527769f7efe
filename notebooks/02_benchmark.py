# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2 · Benchmark: how fast does the model train and predict, on CPU and GPU?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cifar10-course/cifar10-course/blob/main/notebooks/02_benchmark.ipynb)
#
# **What you will learn**
# - why timing one call with `time.time()` (what the original notebook did) misleads: the first
#   call pays for memory allocation and kernel selection, and on a GPU the call returns before
#   the work is done;
# - how to measure properly: warm-up, repeated runs, `torch.cuda.synchronize` (done for you by
#   `torch.utils.benchmark`), median and spread;
# - how throughput and latency change with the batch size, and what `channels_last` (each
#   pixel's channels stored side by side, the layout fast convolution kernels want), bf16/fp16
#   autocast (most layers computed in 16-bit numbers), `torch.compile` and
#   `torch.inference_mode` buy;
# - whether the input pipeline keeps up with the model, and where it would not;
# - the original notebook's headline, measured: how much faster training is on a GPU than on a CPU,
#   and the error you get when the model and the batch are on different devices.
#
# It uses the run folder from [01 · Train](01_train.ipynb) when there is one, and otherwise the
# fast model that ships with `cifar_lib`, so it also runs on its own (as on Colab, where each
# notebook gets a fresh runtime).

# %%
# Setup: on Colab, and only there, install the cifar_lib version this lesson was written for
# (cifar_lib/notebook.py: INSTALL_TARGET, the repository at a release tag; $CIFAR_LIB_INSTALL, if
# set, is installed instead).
import os
import subprocess
import sys

try:
    import google.colab  # noqa: F401 (exists only on Colab)
    ON_COLAB = True
except ImportError:
    ON_COLAB = False
if ON_COLAB:
    target = os.environ.get("CIFAR_LIB_INSTALL", "git+https://github.com/cifar10-course/cifar10-course@v0.2.0")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", target], check=True)

# %% tags=["parameters"]
run_dir = "runs/fast"     # the run folder written by 01_train (figures and results go here too)
if_missing = "shipped"    # no run in run_dir: "shipped" (cifar_lib's model), "train" or "error"
keep_on_drive = False     # on Colab: run folders on Google Drive (where 01_train kept them)
batch_sizes = [1, 8, 32, 128, 512, 1024]  # batch sizes to time
device = "all"            # "all": the CPU and any GPU side by side; or "auto", "cpu", "cuda"
compile = False           # also time torch.compile (slow to compile on a CPU: minutes)
train_steps = 20          # training throughput: steps timed per recipe and device (after warm-up)
data_root = None          # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB       # fetch CIFAR-10 with torchvision if missing (needs internet)
quick = False             # CI smoke test: three batch sizes, short timings, a small data subset

# %%
# %matplotlib inline
import pandas as pd
import torch

from cifar_lib.speed.latency import benchmark_run
from cifar_lib.speed.loaders import run as bench_pipeline
from cifar_lib.speed.steps import run as bench_training
from cifar_lib.models import SimpleCNN
from cifar_lib.notebook import find_run, keep_runs_on_drive, record
from cifar_lib.plots import plot_throughput, plot_training_throughput, save_figure

run_dir = keep_runs_on_drive(run_dir, keep_on_drive)
run = find_run(run_dir, if_missing, data_root=data_root, download=download, quick=quick)
print(f"torch {torch.__version__}; CPU threads: {torch.get_num_threads()}; "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none on this machine'}")

# %% [markdown]
# ## Model and data on the same device
# The original notebook's first lesson on a GPU: a model's weights and its input must be on the same
# device, with the same dtype. Mixing them is the most common error in PyTorch; here it is,
# with its one-line fix. (Without a GPU, a dtype mismatch gives the same kind of error.)

# %%
net = SimpleCNN().eval()
batch = torch.zeros(4, 3, 32, 32)
if torch.cuda.is_available():
    net = net.to("cuda")                     # the weights move to the GPU, the batch does not
else:
    batch = batch.double()                   # no GPU here: a dtype mismatch instead
try:
    net(batch)
except RuntimeError as e:
    print("RuntimeError:", str(e).splitlines()[0])
weights = next(net.parameters())
fixed = net(batch.to(device=weights.device, dtype=weights.dtype))  # the fix: move the batch
print("after batch.to(device=..., dtype=...):", tuple(fixed.shape), fixed.device, fixed.dtype)

# %% [markdown]
# ## Why one call with a stopwatch lies
# The obvious way to time a model is to read the clock before and after one call. It misleads
# three ways:
# - the **first call** pays one-off costs: memory is allocated, the CPU library (oneDNN) or the
#   GPU's (cuDNN) picks and prepares its kernels, CUDA loads them onto the card;
# - a **GPU works asynchronously**: `model(x)` returns as soon as the kernels are queued, so a
#   clock read right after it measures the launch, not the work. `torch.cuda.synchronize()`
#   waits for the queue to drain (`cifar_lib.speed.synced_clock` does it before every
#   clock reading);
# - **one sample** catches whatever else the machine was doing at that moment.
#
# `torch.utils.benchmark.Timer` handles all three: it runs the call until it can size blocks of
# calls long enough for the clock's overhead to vanish (a warm-up on the way), synchronises the
# GPU around each block, and keeps every block's time, so you get a median and a spread. One
# trap: it uses **one CPU thread** unless told otherwise (`num_threads=`).
#
# Three ways of timing the same model and batch, on the GPU when there is one (there, a fourth line
# shows what forgetting to synchronise gives). Expect the numbers to jump about on a busy
# machine: that is the third point.

# %%
import logging
import time

# torch.utils.benchmark loads torch's builder of C++ extensions, which warns on a machine with a
# CUDA build of torch but no GPU that it found no CUDA runtime: nothing to do with timing.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark

from cifar_lib.speed import synced_clock
from cifar_lib.checkpoint import load_run

dev = torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")
model = load_run(run, dev).model         # a fresh copy of the model: never called yet
x = torch.randn(16, 3, 32, 32, device=dev)  # one batch of 16 random images


def call():
    with torch.no_grad():
        return model(x)


# 1. The naive way: one cold call, the clock read as soon as it returns.
start = time.perf_counter()
call()
cold_ms = (time.perf_counter() - start) * 1e3

# 2. Warm up, then time several calls, waiting for the GPU before each clock reading.
for _ in range(3):
    call()
n = 5
start = synced_clock(dev)
for _ in range(n):
    call()
warm_ms = (synced_clock(dev) - start) / n * 1e3

# 3. torch.utils.benchmark: blocks of calls, synchronised, repeated for 0.5 s; the median.
timer = benchmark.Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
measured = timer.blocked_autorange(min_run_time=0.5)

print(f"{dev.type}, a batch of {len(x)} images:")
print(f"  one cold call, time.perf_counter():  {cold_ms:8.2f} ms  (with the one-off costs)")
print(f"  warmed up, synchronised, mean of {n}:  {warm_ms:8.2f} ms")
print(f"  benchmark.Timer, median:             {measured.median * 1e3:8.2f} ms  "
      f"({len(measured.times)} blocks of {measured.number_per_run} calls; "
      f"spread between the quartiles {measured.iqr * 1e3:.2f} ms)")
if dev.type == "cuda":  # what forgetting to synchronise shows: only the time to queue the work
    start = time.perf_counter()
    for _ in range(n):
        call()
    unsynced_ms = (time.perf_counter() - start) / n * 1e3
    torch.cuda.synchronize()
    print(f"  warmed up, NOT synchronised:         {unsynced_ms:8.2f} ms  (the launch only)")

# %% [markdown]
# The library's benchmark below does this for every batch size and variant: a first call
# timed on its own (`first_call_ms`), warm-up calls, then `benchmark.Timer` with all CPU
# threads, medians and quartiles.
#
# ## Measure inference
# For every batch size: first the original notebook's method (one cold call, `time.time()`),
# then each variant warmed up and timed by `torch.utils.benchmark.Timer`. On a machine without a
# GPU the GPU rows say so, and the rest still runs.

# %%
rows, info = benchmark_run(run, quick=quick, device=device, compile=compile,
                           **({} if quick else {"batch_sizes": batch_sizes}))
table = pd.DataFrame(rows)

# %% tags=["nbval-check-output"]
print(f"model: {info['model']} ({info['parameters']:,} parameters)")
print("variants timed:", ", ".join(sorted(table.variant.unique())))

# %% [markdown]
# ## The original notebook's method against a proper measurement
# Same model, same batch, same device. The single cold call pays a first call's one-off costs
# on top of the work: at small batches they dominate and it is far slower than the Timer's
# median; at large batches the work dwarfs them, and one reading lands above or below the median
# by chance. (It is timed with the GPU synchronised; without that, a GPU call looks
# misleadingly *fast*, as the stopwatch cell's "NOT synchronised" line shows.)

# %%
plain = table[(table.variant == "no_grad") & (table.status == "ok")]
plain.pivot_table(index=["device", "batch_size"], columns="method", values="images_per_s").round(0)

# %% [markdown]
# ## Throughput and latency by batch size
# Bigger batches amortise per-call overhead: throughput rises, but so does the latency of each
# batch. Error bars span the quartiles of the repeated measurements.

# %%
fig = plot_throughput(rows)
save_figure(fig, run_dir, "inference_throughput")
fig

# %%
timed = table[(table.method == "benchmark.Timer")]
timed.pivot_table(index=["device", "batch_size"], columns="variant", values="median_ms").round(2)

# %% [markdown]
# ## Speed-ups, each against the plain model (`no_grad`, fp32) in the same run
# `speedup` > 1 is faster. `grad_enabled` shows what forgetting `torch.no_grad()` costs.
# `autocast` depends on the hardware more than anything else here: a CPU with native bf16
# arithmetic runs bf16 faster than fp32, while on a CPU without it bf16 is emulated
# and runs *slower*, so much so that only batches of up to 32 are timed; the cell below says
# which kind this machine is, and the table shows what
# bf16 does here. That is why `cifar_lib` uses bf16 on a CPU only where the CPU has it, and
# picks fp16 or bf16 on a GPU by its compute capability.

# %%
from cifar_lib.device import cpu_has_native_bf16

print("this CPU has native bf16:", cpu_has_native_bf16())
timed.pivot_table(index=["device", "batch_size"], columns="variant", values="speedup").round(2)

# %%
# What was not timed, and why: one line per device and reason, with how many rows it skipped.
skipped = table[table.status != "ok"]
skipped.groupby(["device", "status"]).size().rename("rows skipped").reset_index()

# %% [markdown]
# ## Training on the GPU against the CPU
# The original notebook's point: training is much faster on a GPU. Here both recipes run the same
# training steps as `fit` (model, optimiser, augmented batches, mixed precision where the device
# has it) on every device present: a few warm-up steps, then a fixed number of steps timed with
# the GPU synchronised before each clock reading.

# %%
training = bench_training(["original", "fast"], device, steps=3 if quick else train_steps,
                          warmup=2 if quick else 3, root=data_root, download=download, quick=quick)
pd.DataFrame(training)

# %%
fig = plot_training_throughput(training)
save_figure(fig, run_dir, "training_throughput")
fig

# %% [markdown]
# ## The input pipeline
# Training can go no faster than its batches arrive. The original notebook used torchvision's
# `Dataset` + `DataLoader` (one PIL image at a time through `ToTensor` and `Normalize`);
# `cifar_lib` keeps the data set as one tensor and normalises and augments whole batches.
# Compare the images per second below with the training table above: on a CPU the model is far
# slower than either pipeline, while a GPU trains many times faster and can be held back by a
# slow one.

# %%
pipeline = bench_pipeline(data_root, batch_size=128, limit=2000 if quick else 10_000,
                          download=download)
pd.DataFrame(pipeline)

# %%
best = timed[(timed.status == "ok")].sort_values("images_per_s").iloc[-1]
record({"model": info["model"], "quick": quick,
        "devices": sorted(table[table.status == "ok"].device.unique().tolist()),
        "cpu_threads": torch.get_num_threads(),
        "best_images_per_s": float(best.images_per_s), "best_variant": best.variant,
        "best_device": best.device, "best_batch_size": int(best.batch_size),
        "training_images_per_s": {f"{r['recipe']} on {r['device']}": r.get("images_per_s")
                                  for r in training},
        "pipeline_speedup_vs_dataloader": pipeline[2]["speedup_vs_original"]},
       run_dir=run_dir, name="benchmark_results")

# %% [markdown]
# ## Exercises
# 1. **Batch size 1 on the GPU.** Set `batch_sizes = [1, 2, 4, 8, 16, 1024]` and
#    `device = "cuda"` in the parameters cell (on Colab, with a GPU runtime): how many images
#    per second does batch size 1 reach, compared with 1024? Where does the time of one small
#    batch go, if not into arithmetic? *Hint:* count the kernels one forward pass launches.
#    <details><summary>Answer</summary>A small share of the big batch's throughput: each call
#    launches the same dozens of kernels whatever the batch size, and with one image each
#    kernel finishes long before the next launch; the GPU waits on Python and the driver.
#    </details>
# 2. **Forget to synchronise.** In the stopwatch cell, replace both `synced_clock(dev)` with
#    `time.perf_counter()` and run it on a GPU: what does the warmed-up time become, and why
#    is it wrong? *Hint:* what has the GPU finished when `model(x)` returns?
#    <details><summary>Answer</summary>It drops to the time of launching the kernels, because
#    the call returns as soon as the work is queued; the work itself is not measured.</details>
# 3. **One CPU thread.** In the same cell, remove `num_threads=torch.get_num_threads()` from the
#    `benchmark.Timer(...)` line: how much slower is the CPU number, and what does that tell you
#    about a benchmark run with the Timer's defaults?
#    <details><summary>Check</summary>Print `torch.get_num_threads()`: the CPU number should
#    fall by up to that factor for the large batches, where the work parallelises.</details>
# 4. **Compile.** Set `compile = True`: how long is the first call of the `compile` variant
#    (the `first_call_ms` column of `table`), and after how many calls has compiling paid for
#    itself?
# 5. **How stable is training throughput?** Set `train_steps = 5`, then `100`: how much do the
#    images/s of the training table move, and which number would you trust?

# %% [markdown]
# ## One file to share: the exported model
# `torch.export` traces the model into a program that needs only PyTorch: no `cifar_lib`, no
# Python class of ours. `cifar_lib.export` puts the normalisation inside it, so it takes raw RGB
# images in [0, 1] (N×3×32×32) and returns logits; the class names travel with the file
# (`python -m cifar_lib export --run-dir RUN --out model.pt2` does the same from a terminal, and
# `--out model.onnx` writes ONNX). Is the exported program faster than the eager model? Timed
# the same way as above, with `benchmark.Timer`, on the CPU:

# %%
from pathlib import Path

from cifar_lib.export import export_run, read_metadata, wrap

exported_path = export_run(run, Path(run_dir) / "model.pt2")
exported = torch.export.load(exported_path).module()  # what a user of the file runs
eager = wrap(run, "cpu")                                  # the same model, normalisation inside
images = torch.rand(64 if quick else 256, 3, 32, 32)      # raw images in [0, 1]
with torch.no_grad():
    print("exported and eager agree:", torch.allclose(exported(images), eager(images), atol=1e-4))
print(f"{exported_path.name}: {exported_path.stat().st_size / 1e6:.1f} MB, classes "
      f"{', '.join(read_metadata(exported_path)['classes'])}")
for label, fn in (("eager", eager), ("exported", exported)):
    timer = benchmark.Timer("with torch.no_grad(): fn(images)",
                            globals={"fn": fn, "images": images, "torch": torch},
                            num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=0.2 if quick else 1.0)
    print(f"  {label:>8}, a batch of {len(images)}: median {m.median * 1e3:7.2f} ms "
          f"({len(images) / m.median:,.0f} images/s)")
