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
# - how the course's original network (the *seed* recipe: a 620k-parameter CNN trained with Adam
#   for two epochs, about 64%) compares with a state-of-the-art fast recipe (about 94%);
# - which tricks make the fast recipe fast: a whitening first layer, Nesterov SGD with a
#   warm-up/decay schedule, label smoothing, weight averaging, augmentation on whole tensors and
#   test-time augmentation;
# - how a training run is saved (checkpoint + metrics + history) so the next lessons can use it.
#
# Runs on a CPU: about 17 minutes for the fast recipe on two cores (the outputs below). A GPU
# (Colab: *Runtime → Change runtime type → GPU*) is far faster: the published recipe this one
# follows trains in seconds on an A100 (not measured for this course yet).

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
run_dir = "runs/fast"    # folder for checkpoint.pt, metrics.json, history.json (next lessons read it)
recipe = "fast"          # "fast" (airbench-style, ~94%) or "seed" (the original notebook, ~64%)
model = None             # override the recipe's model: "simple_cnn" or "airbench" (None: recipe's)
epochs = None            # override the number of epochs (None: the recipe's own)
batch_size = None        # override the batch size (None: the recipe's own)
lr = None                # override the peak learning rate (None: the recipe's own)
seed = 0                 # one seed for everything: same seed, same result on a CPU
data_root = None         # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB      # fetch CIFAR-10 with torchvision if missing (needs internet)
device = "auto"          # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
compare_seed = True      # also train the seed's recipe, to compare with
quick = False            # CI smoke test: 2,048 training and 1,000 test images, one epoch

# %%
# %matplotlib inline
import torch

from cifar_lib import count_parameters, fit, get_recipe, load_cifar10, select_device
from cifar_lib.notebook import record
from cifar_lib.recipes import quick as quick_config
from cifar_lib.training_plots import LiveCurves, class_counts, class_counts_figure, curves_figure, image_grid

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
image_grid(train, n=32);

# %%
class_counts_figure(("train", train), ("test", test));

# %% [markdown]
# ## The recipe and the model
# A recipe is a `TrainConfig`: every knob of a run in one place. The fast recipe's model is a
# small VGG-like network: a frozen 2×2 **whitening** layer (fitted to the data before training,
# so the first real convolution sees decorrelated inputs), then three blocks of
# conv → max-pool → BatchNorm → GELU → conv → BatchNorm → GELU, and a linear head.

# %%
overrides = {k: v for k, v in dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr).items()
             if v is not None}
if model is not None:
    overrides["model_kwargs"] = {}
config = get_recipe(recipe, seed=seed, device=device)
config = (quick_config(config) if quick else config).replace(**overrides)
config

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib import build_model

net = build_model(config.model, **config.model_kwargs)
print(net)
print(f"parameters: {count_parameters(net):,}")

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
      + f" — {metrics['train_seconds']:.0f} s of training at {metrics['images_per_second']:.0f} images/s")

# %% [markdown]
# ## The seed's recipe, for comparison
# The original notebook: the same data, its `SimpleCNN`, Adam at 1e-3, batch 128, two epochs,
# no augmentation. Same loop, same library, only the recipe differs.

# %%
seed_metrics = None
if compare_seed:
    seed_config = get_recipe("seed", seed=seed, device=device)
    seed_config = quick_config(seed_config) if quick else seed_config
    seed_result = fit(seed_config, train, test, run_dir=f"{run_dir}-seed")
    seed_metrics = seed_result.metrics
    print(f"seed recipe: test accuracy {seed_metrics['test_acc']:.2%} "
          f"in {seed_metrics['train_seconds']:.0f} s of training")
    curves_figure({recipe: result.history, "seed": seed_result.history});

# %% [markdown]
# ## Results
# Recorded as JSON (in the notebook and in `run_dir/train_results.json`) so that scripts and
# parameter sweeps can read them back.

# %%
record({"recipe": recipe, "model": config.model, "epochs": config.epochs, "seed": seed,
        "parameters": metrics["parameters"], "device": metrics["device"],
        "test_acc": metrics["test_acc"], "test_acc_tta": metrics.get("test_acc_tta"),
        "train_seconds": metrics["train_seconds"], "images_per_second": metrics["images_per_second"],
        "seed_recipe_test_acc": seed_metrics["test_acc"] if seed_metrics else None},
       run_dir=run_dir, name="train_results")

# %% [markdown]
# ## Training on several GPUs or machines
# `fit` also runs data-parallel under `torchrun`; see the README section *Training on several
# GPUs or machines*. Next: [02 · Benchmark](02_benchmark.ipynb) measures how fast this model
# predicts, [03 · Evaluate](03_evaluate.ipynb) looks at what it gets wrong.
