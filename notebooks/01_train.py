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
# # 1 · Train a CNN on CIFAR-10
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cifar10-course/cifar10-course/blob/main/notebooks/01_train.ipynb)
#
# **What you will learn**
# - what CIFAR-10 looks like: 60,000 tiny 32×32 photos in ten balanced classes;
# - how the course's original network (the *original* recipe of the seed notebook: a
#   620k-parameter CNN trained with Adam for two epochs, about 64%) compares with a
#   state-of-the-art fast recipe (about 94%);
# - which tricks make the fast recipe fast: a whitening first layer, Nesterov SGD with a
#   warm-up/decay schedule, label smoothing, weight averaging, augmentation on whole tensors and
#   test-time augmentation;
# - how a training run is saved (checkpoint + metrics + history) so the next lessons can use it.
#
# How long the fast recipe takes depends on the processor (all measured on two cores):
# 17 minutes on an AMD EPYC with native bf16, about 30 minutes on the Intel Xeon without native
# bf16 that made the outputs below, about 55 minutes on an AVX2-only AMD EPYC (Zen 3). A GPU
# (Colab: *Runtime → Change runtime type → GPU*) is far faster; GPU times are not measured for
# this course yet. On Colab, set `keep_on_drive = True` to keep the trained run on Google Drive
# for the next lessons (each notebook gets a fresh runtime); without it, lessons 02–04 use the
# fast model that ships with `cifar_lib`.

# %%
# Setup: on Colab, and only there, install cifar_lib from the repository (the address lives
# in cifar_lib/notebook.py: REPOSITORY; $CIFAR_LIB_INSTALL, if set, is installed instead).
import os
import subprocess
import sys

try:
    import google.colab  # noqa: F401 (exists only on Colab)
    ON_COLAB = True
except ImportError:
    ON_COLAB = False
if ON_COLAB:
    target = os.environ.get("CIFAR_LIB_INSTALL", "git+https://github.com/cifar10-course/cifar10-course")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", target], check=True)

# %% tags=["parameters"]
run_dir = "runs/fast"    # folder for checkpoint.pt, metrics.json, history.json (next lessons read it)
keep_on_drive = False    # on Colab: keep run folders on Google Drive (mounted only when True)
recipe = "fast"          # "fast" (airbench-style, ~94%) or "original" (the seed notebook, ~64%)
model = None             # override the recipe's model: "simple_cnn" or "airbench" (None: recipe's)
epochs = None            # override the number of epochs (None: the recipe's own)
batch_size = None        # override the batch size (None: the recipe's own)
lr = None                # override the peak learning rate (None: the recipe's own)
seed = 0                 # one seed for everything: same seed, same result on a CPU
data_root = None         # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB      # fetch CIFAR-10 with torchvision if missing (needs internet)
device = "auto"          # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
compare_original = True  # also train the original recipe, to compare with
quick = False            # CI smoke test: 2,048 training and 1,000 test images, one epoch

# %%
# %matplotlib inline
import torch
from IPython.display import display

from cifar_lib import build_model, configure, count_parameters, fit, load_cifar10, select_device
from cifar_lib.data import class_counts
from cifar_lib.notebook import keep_runs_on_drive, record
from cifar_lib.plots import LiveCurves, image_grid, plot_class_counts, plot_curves

run_dir = keep_runs_on_drive(run_dir, keep_on_drive)
print(f"torch {torch.__version__}, device: {select_device(device)}, CPU threads: {torch.get_num_threads()}")

# %% [markdown]
# ## The data
# `load_cifar10` reads the batch files into memory as `uint8` tensors of shape N×3×32×32: the
# whole training set is only 150 MB, so there is no need for a `DataLoader` at all.

# %%
# NBVAL_CHECK_OUTPUT
train, test = load_cifar10(data_root, download=download)
print(f"train: {tuple(train.images.shape)} {train.images.dtype}, labels {tuple(train.labels.shape)}")
print(f"test:  {tuple(test.images.shape)} {test.images.dtype}, labels {tuple(test.labels.shape)}")
print("classes:", ", ".join(train.classes))
print("train images per class:", class_counts(train))
print("test images per class: ", class_counts(test))

# %%
image_grid(train, n=32)

# %%
plot_class_counts(("train", train), ("test", test))

# %% [markdown]
# ## The recipe and the model
# A recipe is a `TrainConfig`: every knob of a run in one place, checked when it is built.
# `configure` applies this notebook's parameters to the recipe (None keeps the recipe's value)
# the same way the command line does. The fast recipe's model is a small VGG-like network: a
# frozen 2×2 **whitening** layer (fitted to the data before training, so the first real
# convolution sees decorrelated inputs), then three blocks of conv → max-pool → BatchNorm →
# GELU → conv → BatchNorm → GELU, and a linear head.

# %%
config = configure(recipe, quick=quick, seed=seed, device=device, model=model, epochs=epochs,
                   batch_size=batch_size, lr=lr)
config

# %%
net = build_model(config.model, **config.model_kwargs)
print(net)

# %%
# NBVAL_CHECK_OUTPUT
print(f"model: {config.model}, parameters: {count_parameters(net):,}")
print("output for a batch of 2 images:", tuple(net.eval()(torch.zeros(2, 3, 32, 32)).shape))

# %% [markdown]
# ## Train
# The progress bar shows loss and accuracy on the training batches; the curves below redraw
# after every epoch. Everything is saved to `run_dir`; after an interruption, `fit(...,
# resume=True)` continues from the last finished epoch.

# %%
live = LiveCurves()
result = fit(config, train, test, run_dir=run_dir, callbacks=[live])
metrics = result.metrics
print(f"test accuracy {metrics['test_acc']:.2%}"
      + (f", with test-time augmentation {metrics['test_acc_tta']:.2%}" if "test_acc_tta" in metrics else "")
      + f" — {metrics['train_seconds']:.0f} s of training at {metrics['images_per_second']:.0f} images/s"
      + f" ({metrics['device']}, {metrics['precision']})")

# %% [markdown]
# ## The original recipe, for comparison
# The seed notebook: the same data, its `SimpleCNN`, Adam at 1e-3, batch 128, two epochs,
# no augmentation. Same loop, same library, only the recipe differs.

# %%
original_metrics = None
if compare_original:
    original = fit(configure("original", quick=quick, seed=seed, device=device), train, test,
                   run_dir=f"{run_dir}-original")
    original_metrics = original.metrics
    print(f"original recipe: test accuracy {original_metrics['test_acc']:.2%} "
          f"in {original_metrics['train_seconds']:.0f} s of training")
    display(plot_curves({recipe: result.history, "original": original.history}))

# %% [markdown]
# ## Results
# Recorded as JSON (in the notebook and in `run_dir/train_results.json`) so that scripts and
# parameter sweeps can read them back.

# %%
record({"recipe": recipe, "model": config.model, "epochs": config.epochs, "seed": seed,
        "quick": quick, "parameters": metrics["parameters"], "device": metrics["device"],
        "precision": metrics["precision"],
        "test_acc": metrics["test_acc"], "test_acc_tta": metrics.get("test_acc_tta"),
        "train_seconds": metrics["train_seconds"], "images_per_second": metrics["images_per_second"],
        "original_recipe_test_acc": original_metrics["test_acc"] if original_metrics else None},
       run_dir=run_dir, name="train_results")

# %% [markdown]
# ## Training on several GPUs or machines
# `fit` also runs data-parallel under `torchrun`; see the README section *Training on several
# GPUs or machines*. Next: [02 · Benchmark](02_benchmark.ipynb) measures how fast this model
# predicts, [03 · Evaluate](03_evaluate.ipynb) looks at what it gets wrong.
