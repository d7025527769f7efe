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
# # 2 · Benchmark: how fast does the model predict, on CPU and GPU?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cifar10-course/cifar10-course/blob/main/notebooks/02_benchmark.ipynb)
#
# **What you will learn**
# - why timing one call with `time.time()` (what the original notebook did) misleads: the first
#   call pays for memory allocation and kernel selection, and on a GPU the call returns before
#   the work is done;
# - how to measure properly: warm-up, repeated runs, `torch.cuda.synchronize` (done for you by
#   `torch.utils.benchmark`), median and spread;
# - how throughput and latency change with the batch size, and what `channels_last`, bf16/fp16
#   autocast, `torch.compile` and `torch.inference_mode` buy;
# - why a fast input pipeline matters as much as a fast model.
#
# It needs a trained run folder from [01 · Train](01_train.ipynb).

# %%
# Setup: on Colab, and only there, install cifar_lib from the repository (the address lives
# in cifar_lib/notebook.py: REPOSITORY) and let the data download.
import subprocess
import sys

ON_COLAB = "google.colab" in sys.modules
if ON_COLAB:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "git+https://github.com/cifar10-course/cifar10-course"], check=True)

# %% tags=["parameters"]
run_dir = "runs/fast"     # the run folder written by 01_train
batch_sizes = [1, 8, 32, 128, 512, 1024]  # batch sizes to time
device = "auto"           # "auto": CPU, and the GPU too where there is one; or "cpu" / "cuda"
compile = False           # also time torch.compile (slow to compile on a CPU: minutes)
data_root = None          # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB       # fetch CIFAR-10 with torchvision if missing (needs internet)
quick = False             # CI smoke test: three batch sizes, short timings, a small data subset

# %%
# %matplotlib inline
import pandas as pd
import torch

from cifar_lib.bench_data import run as bench_pipeline
from cifar_lib.bench_inference import benchmark_run
from cifar_lib.notebook import record
from cifar_lib.plots import plot_throughput, save_figure

print(f"torch {torch.__version__}; CPU threads: {torch.get_num_threads()}; "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none on this machine'}")

# %% [markdown]
# ## Measure
# For every batch size: first the seed's method (one cold call, `time.time()`), then each
# variant warmed up and timed by `torch.utils.benchmark.Timer`. On a machine without a GPU the
# GPU rows say so, and the rest still runs.

# %%
rows, info = benchmark_run(run_dir, quick=quick, device=device, compile=compile,
                           **({} if quick else {"batch_sizes": batch_sizes}))
table = pd.DataFrame(rows)

# %%
# NBVAL_CHECK_OUTPUT
print(f"model: {info['model']} ({info['parameters']:,} parameters)")
print("variants timed:", ", ".join(sorted(table.variant.unique())))

# %% [markdown]
# ## The seed's method against a proper measurement
# Same model, same batch, same device. The cold single call is slower on a CPU (first-call
# overheads) and, on a GPU, misleadingly *fast* (it only measures launching the kernels).

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

# %%
timed.pivot_table(index=["device", "batch_size"], columns="variant", values="speedup").round(2)

# %%
table[table.status != "ok"][["device", "variant", "batch_size", "status"]].drop_duplicates("status")

# %% [markdown]
# ## The input pipeline
# Training needs batches as fast as the model eats them. The seed notebook used torchvision's
# `Dataset` + `DataLoader` (one PIL image at a time through `ToTensor` and `Normalize`);
# `cifar_lib` keeps the data set as one tensor and normalises and augments whole batches.

# %%
pipeline = bench_pipeline(data_root, batch_size=128, limit=2000 if quick else 10_000)
pd.DataFrame(pipeline)

# %%
best = timed[(timed.status == "ok")].sort_values("images_per_s").iloc[-1]
record({"model": info["model"], "devices": sorted(table[table.status == "ok"].device.unique().tolist()),
        "cpu_threads": torch.get_num_threads(),
        "best_images_per_s": float(best.images_per_s), "best_variant": best.variant,
        "best_device": best.device, "best_batch_size": int(best.batch_size),
        "pipeline_speedup_vs_dataloader": pipeline[2]["speedup_vs_seed"]},
       run_dir=run_dir, name="benchmark_results")
