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
# - how a CNN is built, layer by layer, and trained: forward → loss → backward → step, written
#   out by hand and then checked, bit for bit, against the library's `fit`;
# - how the course's original network (the *original* recipe of the seed notebook: a
#   620k-parameter CNN trained with Adam for two epochs, about 64%) compares with a
#   state-of-the-art fast recipe (about 94%);
# - which tricks make the fast recipe fast, each shown with code or a figure from the library
#   code that runs it: a whitening first layer, a decaying learning-rate schedule, flips and
#   shifts of whole batches, label smoothing, Muon's orthogonalised updates for the filters,
#   small crops early in training, and test-time augmentation;
# - what each trick buys, measured: an ablation table of airbench94 (the published recipe the
#   fast one builds on) with one trick removed at a time;
# - how long a run takes on *your* hardware, measured before it starts;
# - how a training run is saved (checkpoint + metrics + history) so the next lessons can use it.
#
# How long the fast recipe trains depends on the processor (two cores each): about 7 minutes on
# the AMD EPYC (Zen 5) with native bf16 that made the outputs below (airbench94, the published
# recipe it improves on, 9.4 there), 13.5 on that kind of CPU with bf16 off (airbench94: 19.4;
# 2026-11-27), and about 19 on an Intel Xeon without native bf16 (measured for the same
# optimiser steps computed whole; airbench94: 26; the others 2026-11-26, benchmarks/README.md).
# CPUs with neither bf16 nor AVX-512 (AVX2 only) should be slower still (not measured here yet).
# A GPU (Colab: *Runtime → Change runtime type → GPU*) is far faster; GPU times are not measured
# for this course yet.
# The cell just before training times a few steps on your machine and says how long the wait
# will be, and how to make it shorter. On Colab, set `keep_on_drive = True` to keep the trained
# run on Google Drive for the next lessons (each notebook gets a fresh runtime); without it,
# lessons 02–04 use the fast model that ships with `cifar_lib`.
#
# Each section ends in a check: the code in view and the tested library agree. **Exercises** are
# at the end.

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
run_dir = "runs/fast"    # folder for checkpoint.pt, metrics.json, history.json (next lessons read it)
keep_on_drive = False    # on Colab: keep run folders on Google Drive (mounted only when True)
recipe = "fast"          # "fast" (~94%), "airbench94" (~94%, slower), "fast_short" (~85%), "fast_small" (~64%), "original" (seed's, ~64%)
model = None             # override the recipe's model: "simple_cnn" or "airbench" (None: recipe's)
epochs = None            # override the number of epochs (None: the recipe's own)
batch_size = None        # override the batch size (None: the recipe's own)
lr = None                # override the peak learning rate (None: the recipe's own)
seed = 0                 # one seed for everything: same seed, same result on a CPU
data_root = None         # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB      # fetch CIFAR-10 with torchvision if missing (needs internet)
device = "auto"          # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
compare_original = True  # also train the original recipe, to compare with
rerun_ablation = False   # re-measure the ablation table here (cheap: 1 seed, 1 epoch, narrow net)
quick = False            # CI smoke test: 2,048 training and 1,000 test images, one epoch

# %%
# %matplotlib inline
import torch
from IPython.display import display

from cifar_lib import build_model, configure, count_parameters, fit, load_cifar10, select_device
from cifar_lib.data import class_counts
from cifar_lib.notebook import keep_runs_on_drive, record
from cifar_lib.plots import (LiveCurves, image_grid, plot_augmented_batch, plot_class_counts,
                             plot_curves, plot_label_smoothing, plot_lr_schedule,
                             plot_tta_views, plot_whitening)

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
# ## A network, layer by layer
# The original recipe's network is the seed notebook's CNN (`SimpleCNN` in `cifar_lib.models`),
# small enough to build right here. Three times over: a 3×3 **convolution** slides learnt filters
# over the image (padding 1 keeps the size), **ReLU** keeps the positive responses, and 2×2
# **max-pooling** keeps the largest of each 2×2 block, halving height and width. Then the
# 128×4×4 feature map is **flattened** into 2,048 numbers and two **linear** layers map it to
# 10 scores (*logits*), one per class. The shapes after each layer tell the story: fewer
# pixels, more channels. The layers get the names `SimpleCNN` gives its own, so that the
# library's weights can be loaded into this network.

# %%
# NBVAL_CHECK_OUTPUT
from collections import OrderedDict

from torch import nn

my_cnn = nn.Sequential(OrderedDict([
    ("conv1", nn.Conv2d(3, 32, kernel_size=3, padding=1)),    # 32 filters, each 3×3 × 3 colours
    ("relu1", nn.ReLU()),
    ("pool1", nn.MaxPool2d(2)),                               # the largest of each 2×2 block
    ("conv2", nn.Conv2d(32, 64, kernel_size=3, padding=1)),
    ("relu2", nn.ReLU()),
    ("pool2", nn.MaxPool2d(2)),
    ("conv3", nn.Conv2d(64, 128, kernel_size=3, padding=1)),
    ("relu3", nn.ReLU()),
    ("pool3", nn.MaxPool2d(2)),
    ("flatten", nn.Flatten()),                                # 128×4×4 → 2,048 numbers
    ("fc1", nn.Linear(128 * 4 * 4, 256)),
    ("relu4", nn.ReLU()),
    ("fc2", nn.Linear(256, 10)),                              # one score (logit) per class
]))

x = torch.zeros(1, 3, 32, 32)  # a batch of one image: batch × colours × height × width
print(f"{'input':8s} {str(tuple(x.shape)):16s}")
for name, layer in my_cnn.named_children():
    x = layer(x)
    print(f"{name:8s} {str(tuple(x.shape)):16s} {count_parameters(layer):>9,} parameters")
print(f"{'total':8s} {'':16s} {count_parameters(my_cnn):>9,} parameters")

# %% [markdown]
# Now the library's `SimpleCNN`: the same number of parameters, and once its (random) weights
# are copied into the network built above, the same outputs for real images, bit for bit.

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.batches import HALF_MEAN_STD, normalize
from cifar_lib.models import SimpleCNN

library_cnn = SimpleCNN()
my_cnn.load_state_dict(library_cnn.state_dict())  # same names (conv1.weight, …): same weights
images = normalize(train.images[:16], *HALF_MEAN_STD)  # 16 training images, scaled to [-1, 1]
with torch.no_grad():
    same = torch.equal(my_cnn(images), library_cnn(images))
print(f"parameters: built here {count_parameters(my_cnn):,}, "
      f"cifar_lib's SimpleCNN {count_parameters(library_cnn):,}")
print("identical outputs:", same)

# %% [markdown]
# ## Training, by hand
# Training repeats four lines for every batch of images:
# 1. **forward**: the network's logits for the batch;
# 2. **loss**: cross-entropy, −log of the probability (softmax of the logits) the network gives
#    each image's true class, averaged over the batch;
# 3. **backward**: autograd computes the gradient of the loss with respect to every weight;
# 4. **step**: the optimiser moves each weight a little against its gradient (Adam, the original
#    recipe's optimiser, scales each move by the size of that weight's recent gradients).
#
# The batches come from `cifar_lib`'s `BatchIterator`: a shuffled epoch of the in-memory images,
# normalised as whole tensors on the device. Below: the original recipe (Adam, learning rate
# 1e-3, batches of 128) for one epoch on the first 1,024 training images: 8 steps. It runs on
# the CPU whatever `device` says: a GPU would give the same curve, but not the same numbers to
# the last bit, and the next cell compares bits.

# %%
import torch.nn.functional as F

from cifar_lib.batches import BatchIterator
from cifar_lib.train import seed_everything

loop_config = configure("original", seed=seed, device="cpu", epochs=1, train_subset=1024,
                        test_subset=100, eval_every=0)
loop_device = torch.device(loop_config.device)  # e.g. select_device("cuda"): the rest follows
seed_everything(loop_config.seed)               # one seed: the same weights and batches every time
loop_net = build_model(loop_config.model).to(loop_device)          # SimpleCNN, random weights
optimizer = torch.optim.Adam(loop_net.parameters(), lr=loop_config.lr)
batches = BatchIterator(train.subset(loop_config.train_subset), loop_config.batch_size,
                        mean=loop_config.mean, std=loop_config.std, device=loop_device,
                        shuffle=True, seed=loop_config.seed, drop_last=True)

loop_net.train()
for step, (x, y) in enumerate(batches):  # x: 128×3×32×32 floats, y: 128 labels, on loop_device
    logits = loop_net(x)                 # 1. forward: 128×10 logits
    loss = F.cross_entropy(logits, y)    # 2. loss: one number for the whole batch
    optimizer.zero_grad()                # (forget the previous step's gradients)
    loss.backward()                      # 3. backward: a gradient for every weight
    optimizer.step()                     # 4. step: every weight moves against its gradient
    print(f"step {step}: loss {loss.item():.3f}")

# %% [markdown]
# `fit` runs this same loop (its `train_step` adds what the fast recipe switches on: the
# learning-rate schedule, mixed precision and the Muon optimiser, none of which the original
# recipe uses). Same seed, same data, same recipe: on a CPU it must end with exactly the same
# weights.

# %%
# NBVAL_CHECK_OUTPUT
fitted = fit(loop_config, train, test, progress=False).model.state_dict()
mine = loop_net.state_dict()
identical = mine.keys() == fitted.keys() and all(torch.equal(mine[k], fitted[k]) for k in mine)
print(f"{len(fitted)} weight tensors compared")
print("fit and the hand-written loop give identical weights:", identical)

# %% [markdown]
# ## The recipe and the model
# A recipe is a `TrainConfig`: every knob of a run in one place, checked when it is built.
# `configure` applies this notebook's parameters to the recipe (None keeps the recipe's value)
# the same way the command line does. The fast recipe's model (airbench94's) is a small
# VGG-like network: a frozen 2×2 **whitening** layer (fitted to the data before training, so
# the first real convolution sees decorrelated inputs), then three blocks of conv → max-pool →
# BatchNorm → GELU → conv → BatchNorm → GELU, and a linear head.

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
# ## The fast recipe's ideas, one figure each
# The fast recipe gets to 94% in ten epochs where the original gets to 64% in two. No single trick
# does it; each figure below is drawn from the library code that `fit` runs. They show the fast
# recipe, whatever `recipe` is set to. Most of its ideas are Keller Jordan's airbench94 (the
# recipe `airbench94` here, the fast default until 2026-11-26); the fast recipe adds
# airbench94_muon's optimiser for the filters and trains the first epochs on smaller crops,
# which together make it about 0.7× as long on a CPU for the same 94% (benchmarks/README.md).
#
# ### A whitening first layer
# Neighbouring pixels, and the three colours of one pixel, are strongly correlated: a 2×2 patch
# (12 numbers) has almost all its variance in one direction, its overall brightness, and very
# little in the fine details that tell a cat from a dog. The fast net's first layer is a 2×2
# convolution whose 12 filters are fitted to the data *before* training, not learnt: the
# eigenvectors of the patch covariance C = V Λ Vᵀ, each divided by √(λ + ε). Its outputs have
# covariance ≈ the identity: every direction reaches the next layer at the same scale, so SGD
# does not have to discover the faint ones slowly. ε = 5·10⁻⁴ deliberately damps the faintest
# direction (there, mostly noise) to about half. The filters stay frozen; each also appears
# negated (24 channels), so the GELU after it loses nothing.

# %%
fast = configure("fast", seed=seed)
whitening = build_model(fast.model, **fast.model_kwargs).whitening
whitening.init_from(normalize(train.images[:2000], fast.mean, fast.std))  # fit uses 5,000
held_out = normalize(test.images[:1000], fast.mean, fast.std)             # images it never saw
before, after = whitening.covariances(held_out)
off_diagonal = ~torch.eye(12, dtype=torch.bool)
print(f"largest covariance between two different patch numbers: before "
      f"{before[off_diagonal].max():.2f}, after whitening {after[off_diagonal].abs().max():.2f}")
plot_whitening(whitening, held_out)

# %% [markdown]
# ### The learning-rate schedule
# The original recipe's Adam uses one constant rate. The fast recipe lets the step size fall
# linearly from its peak at the first step to 0 at the last (a *triangle* schedule whose peak
# is at the start), so that the last steps settle into a minimum instead of bouncing around
# it. One multiplier scales both of its optimisers: Muon for the convolution filters (below)
# and SGD with Nesterov momentum for the rest (the head, the BatchNorm and whitening biases).
# airbench94, SGD throughout, also needs a warm-up: its *triangle* schedule starts at 0.2 × the
# peak and reaches it at 23% of training, because the fresh net and its BatchNorm statistics
# cannot take big SGD steps yet; Muon's steps have a fixed size whatever the gradient's, and
# need none. `train_step` sets every step's rate from
# `lr_multiplier`; here it is for every step of a full fast run.

# %%
from cifar_lib.train import lr_multiplier

steps_per_epoch = len(train) // fast.batch_size  # 25 steps of 2,000 images
total_steps = fast.epochs * steps_per_epoch
for step in (0, total_steps // 2, total_steps - 1):
    m = lr_multiplier(fast, step, total_steps)
    print(f"step {step:3d}: × {m:.3f}: Muon lr {fast.muon_lr * m:.3f}, SGD lr {fast.lr * m:.3f}")
plot_lr_schedule(fast, steps_per_epoch)

# %% [markdown]
# ### Flips and shifts, on whole batches
# Augmentation makes new training images out of old ones: a mirrored car is still a car, and so
# is a car two pixels to the left. `BatchIterator` does it to whole batches on the device:
# `flip_some` mirrors the chosen images, `translate` moves each by (dy, dx) pixels, both in
# [−2, 2], filling the border by reflection. The fast recipe flips *alternately*: a random half
# of the images in even epochs and the other half in odd ones, so every image is seen both ways
# every two epochs. Below: eight training images as they are, then as the model gets them in
# epochs 1 and 2 (`BatchIterator.epoch_draws` gives each one's flip and shift).

# %%
plot_augmented_batch(train, fast, n=8)

# %% [markdown]
# ### Small crops first, whole images last; a little colour jitter
# A convolution's cost grows with the number of pixels, so the fast recipe spends its first six
# epochs on random 24×24 windows of the images (56% of the pixels each) while the net learns
# coarse features, and its last four on whole images, so it ends at the test images' size.
# `crop` cuts each image's window from its top-left corner (drawn afresh every epoch). Each
# training image also gets its own brightness shift (up to ±0.14 in normalised units) and
# contrast factor (1 ± 0.13), nearly free and worth about 0.15 points (`batches.jitter`).

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.batches import crop

sizes = [fast.crop_size_at(epoch) or 32 for epoch in range(fast.epochs)]  # None: whole image
print("image size by epoch:", sizes)
print(f"pixels over the run: {sum(s * s for s in sizes) / (fast.epochs * 32 * 32):.0%} of "
      f"{fast.epochs} whole-image epochs")
x = normalize(train.images[:3], fast.mean, fast.std)            # 3×3×32×32
corners = torch.tensor([[0, 0], [8, 8], [4, 2]])                # top-left (row, column) each
windows = crop(x, corners, 24, 24)
print(f"{tuple(x.shape)} → {tuple(windows.shape)}; the second window is rows 8–31, columns "
      f"8–31 of the second image: {torch.equal(windows[1], x[1, :, 8:32, 8:32])}")

# %% [markdown]
# ### Label smoothing
# With one-hot targets the loss only reaches zero when the true class's logit is infinitely far
# above the others, so training keeps pushing the logits apart: an over-confident net. With
# label smoothing s = 0.2 the target is 1 − s + s/10 = 0.82 for the true class and s/10 = 0.02
# for each of the others; the loss is then lowest at a finite margin, log(0.82 / 0.02) ≈ 3.7.
# Here are the smoothed targets by hand, checked against the library and against PyTorch's
# `F.cross_entropy(..., label_smoothing=0.2)`, which `train_step` calls.

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.train import smoothed_targets

smoothing, y = fast.label_smoothing, train.labels[:4]
targets = F.one_hot(y, 10) * (1 - smoothing) + smoothing / 10  # then each row sums to 1
logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))  # any logits will do
loss_by_hand = -(targets * logits.log_softmax(1)).sum(1).mean()
print(f"target for a {train.classes[y[0]]}:", [round(v, 2) for v in targets[0].tolist()])
print("the same as cifar_lib's smoothed_targets:",
      torch.allclose(targets, smoothed_targets(y, 10, smoothing)))
print(f"F.cross_entropy with label_smoothing={smoothing} is the loss against these targets:",
      torch.allclose(loss_by_hand, F.cross_entropy(logits, y, label_smoothing=smoothing)))

# %%
plot_label_smoothing(fast.label_smoothing, true_class=int(y[0]), classes=train.classes)

# %% [markdown]
# ### Muon: orthogonalised updates for the filters
# A gradient matrix (a conv filter bank reshaped to out × in·3·3) is dominated by a few large
# directions; SGD's step follows them and barely moves along the rest. Muon (`cifar_lib.muon`)
# keeps SGD's momentum but replaces the step by the nearest *orthogonal* matrix: the same
# singular vectors, every singular value set to about 1, so rare directions move as much as
# common ones. An SVD would give it exactly; three Newton-Schulz iterations, only matrix
# products, give it nearly (values between about 0.6 and 1.2: close enough for training),
# after dividing by the norm so that every singular value is at most 1:
# x ← a·x + (b·G + c·G²)·x with G = x·xᵀ. Here they are on a random matrix of the shape of
# the first convolution's gradient (64 filters of 24 channels × 3 × 3), checked against the
# library. airbench94 uses *lookahead* instead (a slow, averaged copy of the weights); the fast
# recipe needs none.

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.muon import NS_COEFFICIENTS, orthogonalize

a, b, c = NS_COEFFICIENTS
g = torch.randn(64, 24 * 3 * 3, generator=torch.Generator().manual_seed(0))  # out × in·3·3
g[:, :8] *= 20                                 # a few strong directions, as in real gradients
x = g / g.norm()                               # every singular value ≤ 1
for _ in range(3):
    gram = x @ x.T                             # 64×64
    x = a * x + (b * gram + c * gram @ gram) @ x
before, after = torch.linalg.svdvals(g / g.norm()), torch.linalg.svdvals(x)
print(f"singular values before: {before.min():.4f} to {before.max():.3f}; "
      f"after: {after.min():.2f} to {after.max():.2f}")
print("the same as cifar_lib's orthogonalize:", torch.allclose(x, orthogonalize(g), atol=1e-5))

# %% [markdown]
# ## How long will it take on this machine?
# Mostly a matter of hardware. Before the long run, `estimate_fit_seconds` builds the run
# exactly as `fit` will, times 3 training steps (after one warm-up step that allocates memory and
# picks kernels; on a GPU the clock is read only once the GPU has finished), times one batch of
# evaluation, and multiplies out. Beside it, the shorter budgets with the accuracy each reached
# when measured (`cifar_lib.recipes.EXPECTED_ACCURACY`, checked against the benchmark records by
# the tests): `recipe = "fast_short"` (airbench94 at widths 32/64/64 for 4 epochs, about
# 85%) and `recipe = "fast_small"` (widths 16/32/32, one epoch, about 64%). If the answer is
# longer than you want to wait, change the parameters cell and run again: `recipe`, `epochs`,
# or `compare_original = False`.
#
# The fast recipe itself was measured against airbench94 (`recipe = "airbench94"`) side by side
# on a 2-core AMD EPYC (Zen 5): with native bf16 0.725× the time per run, at 94.13% ± 0.09 over
# five seeds (lowest 93.98%); with bf16 turned off 0.70×, at 94.03% ± 0.05 (lowest 93.94%). It
# computes each step of 2,000 images in two halves of 1,000 (`micro_batch`), because on such a
# CPU a 2,000-image step's activations outgrow the caches: whole steps took 0.875× the anchor's
# time there with bf16, and 0.71–0.76× on an Intel Xeon without native bf16
# (`benchmarks/README.md`).

# %%
from cifar_lib.bench.throughput import estimate_fit_seconds
from cifar_lib.recipes import EXPECTED_ACCURACY


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def expected(name: str) -> str:
    accuracy, seeds, _ = EXPECTED_ACCURACY.get(name, (None, 0, None))
    if accuracy is None:
        return "not measured"
    return f"about {accuracy:.1f}% (measured: {seeds} seed{'s' if seeds > 1 else ''})"


timing = dict(steps=1, warmup=0) if quick else dict(steps=3, warmup=1)  # quick: a rough guess
plans = {recipe: config}
if compare_original:
    plans["original, for comparison"] = configure("original", quick=quick, seed=seed, device=device)
wait = 0.0
for name, plan in plans.items():
    e = estimate_fit_seconds(plan, train, test, **timing)
    wait += e["total_seconds"]
    print(f"{name}: {e['total_steps']:,} steps × {e['seconds_per_step']:.3f} s + evaluation "
          f"({e['eval_passes']} × {e['eval_images']:,} images) ≈ {duration(e['total_seconds'])} "
          f"({duration(e['seconds_per_epoch'])} an epoch; {e['device']}, {e['precision']})")
print(f"expected wait for the training below: about {duration(wait)}; "
      f"{recipe} as the recipe stands (full data, no overrides) reaches {expected(recipe)}")
print("That is a long wait on this machine. Shorter budgets:" if wait > 20 * 60 else
      "Shorter budgets:")
for name in ("fast_short", "fast_small"):
    if name != recipe:
        short = estimate_fit_seconds(configure(name, quick=quick, seed=seed, device=device),
                                     train, test, **timing)
        print(f'  recipe = "{name}": ≈ {duration(short["total_seconds"])} here, {expected(name)}')
print("  or fewer epochs (e.g. epochs = 5): proportionally less time, lower accuracy")

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
# ## Test-time augmentation, on the model you just trained
# At test time the model can also look at each image several ways and average its logits.
# Level 2 (the fast recipe's) uses six views: the image and its mirror (weight ¼ each), and the
# image moved one pixel down-right and one pixel up-left, each with its mirror (⅛ each). The
# net was trained on mirrored and shifted images, so each view is a fair guess, and their
# average a better one. The fast recipe's final evaluation spends the six views only on the
# 30% of test images its plain prediction is least sure of (`tta_fraction`): the confident
# ones almost never change their answer, and it saves over half of the evaluation's cost.
# First the check: the weighted views, summed by hand, are what `tta_logits` (and so `fit`'s
# final evaluation) computes.

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.inference import predict_logits, tta_logits, tta_views

trained = result.model.eval()
x = normalize(test.images[:4], config.mean, config.std).to(next(trained.parameters()).device)
with torch.no_grad():
    views = tta_views(x, level=2)
    by_hand = sum(weight * trained(view) for _, weight, view in views)
    print("views:", ", ".join(f"{name} (×{weight:g})" for name, weight, _ in views))
    print("the weighted views give tta_logits:",
          torch.allclose(by_hand, tta_logits(trained, x, level=2), atol=1e-4))

# %%
sample = test.subset(50 if quick else 500)
plain = predict_logits(trained, sample.images, config.mean, config.std).argmax(1)
averaged = predict_logits(trained, sample.images, config.mean, config.std, tta_level=2).argmax(1)
fixed = ((plain != sample.labels) & (averaged == sample.labels)).nonzero().flatten().tolist()
broken = ((plain == sample.labels) & (averaged != sample.labels)).sum().item()
print(f"first {len(sample)} test images: TTA turns {len(fixed)} wrong prediction(s) right and "
      f"{broken} right one(s) wrong")
i = fixed[0] if fixed else 0
plot_tta_views(sample.images[i], config.mean, config.std, level=2, model=trained,
               label=int(sample.labels[i]), classes=test.classes)

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
# ## What each trick buys: the ablation
# Each trick above is in the recipe because it paid. The table shows how much for airbench94's
# (the row "fast": it was the fast recipe when the table was measured): trained with every
# trick, then with one trick removed at a time (everything else unchanged),
# and the original recipe beside them, all for the same budget, on the same machine, over two
# seeds. It was measured with `make bench-ablation` (`python -m cifar_lib bench ablation`); a
# full-size run takes half an hour on a 2-core CPU, so the budget is a narrower network
# (widths 32/64/64) for 4 epochs: look at the differences, not at the absolute accuracy.
# Differences smaller than the spread over seeds (±) are noise at this budget.

# %%
from IPython.display import Markdown

from cifar_lib.bench import ablation
from cifar_lib.bench.records import markdown_table
from cifar_lib.plots import plot_ablation

measured = ablation.read_record()
machine = measured["machine"]
print(f"measured {measured['date'][:10]} with `{measured['command']}` on {machine['cpu']} "
      f"({machine['cpu_count']} cores, native bf16: {machine['cpu_flags']['native_bf16']}, "
      f"torch {machine['torch']}); budget: {measured['budget']}")
display(Markdown(markdown_table(measured["summary"], ablation.SUMMARY_COLUMNS)))
plot_ablation(measured["summary"])

# %% [markdown]
# At this budget the warm-up/decay schedule is worth most (a constant learning rate loses
# about ten points and is erratic from seed to seed), then label smoothing and the whitening
# layer (about two points each) and test-time augmentation (about one). Lookahead's average is
# within the noise after only four epochs. The flips and shifts do not pay here at all: they
# are regularisers, which help once training runs long enough for the network to memorise its
# training images (exercise 4 checks them at the full size and 10 epochs). The seed's recipe,
# given the same four epochs, stays far behind. The *seconds* column of this record cannot be
# compared: other jobs shared the machine's two cores during the run (the same original
# recipe took 564 s for one seed and 154 s for the other), so it says nothing about the tricks.
#
# With `rerun_ablation = True` the next cell measures a cheap version on this machine (one
# seed, one epoch, widths 16/32/32: a few minutes on a CPU, seconds on a GPU). One seed at
# one epoch is noisy: compare its ranking of the tricks with the committed table's.

# %%
if rerun_ablation:
    budget = ablation.QUICK if quick else ablation.CHEAP
    rows = ablation.run(train, test, seeds=[seed], device=device, progress=False, **budget)
    display(Markdown(markdown_table(ablation.summarize(rows), ablation.SUMMARY_COLUMNS)))

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

# %% [markdown]
# ## Exercises
# 1. **Train the original recipe for 10 epochs: how close does it get to the fast recipe?** In
#    the parameters cell set `recipe = "original"` and `epochs = 10`. Or let papermill run the
#    notebook once per value and collect the accuracies in `build/sweep/sweep.csv`:
#    `make sweep GRID="epochs=2,5,10" RECIPE=original PARAMS="-p compare_original false"`
#    (the Makefile passes `RECIPE`, `EPOCHS`, `BATCH_SIZE`, … as notebook parameters, and any
#    other one with `PARAMS="-p NAME VALUE"`).
# 2. **Remove the whitening layer.** In the cell that calls `configure`, add
#    `model_kwargs={"widths": (64, 256, 256), "whiten": False}`: an ordinary, learnt 2×2
#    convolution takes the frozen whitening layer's place (the ablation's "no whitening"). How
#    much accuracy does the whitening buy after 10 epochs? After 2?
# 3. **What happens at batch size 1 on the GPU?** On a GPU runtime set `recipe = "original"`,
#    `batch_size = 1` and `device = "cuda"`, and read the estimate before training (then stop
#    it). How many steps is an epoch now, and how many images per second does the GPU manage?
#    Why does it spend most of its time waiting (each step launches dozens of tiny kernels)?
# 4. **Which trick is worth most?** In the cell that calls `configure(recipe, ...)`, add one of
#    `label_smoothing=0.0`, `flip=None`, `translate=0`, `tta_level=0`, `crop_epochs=0` or
#    `brightness=0, contrast=0`, and train the fast recipe. Which costs the most accuracy at the full size and 10 epochs? Which saves
#    time? Compare with the ablation table, measured on airbench94 and a narrower net.
# 5. **Break the agreement, then restore it.** In the hand-written loop, write
#    `F.cross_entropy(logits, y, label_smoothing=0.2)`: the check after it now prints False.
#    Add `label_smoothing=0.2` to `loop_config` as well, so that `fit` trains with it too, and
#    it prints True again.
