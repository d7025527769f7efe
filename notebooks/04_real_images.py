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
# # 4 · Classify your own photos
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cifar10-course/cifar10-course/blob/main/notebooks/04_real_images.ipynb)
#
# **What you will learn**
# - how a real photo becomes a 32×32 input: orientation from EXIF, colour modes converted to
#   RGB, a centre crop to a square, then an antialiased resize (the original notebook simply
#   squashed the whole photo, distorting it);
# - top-k predictions with probabilities, and why a model trained on ten classes must be
#   allowed to say "not confident" (it has never seen a giraffe);
# - that bad files (not an image, truncated, absurdly large) give one clear error each.
#
# On Colab you can upload your own photos; elsewhere the sample photos are used.
# It uses the run folder from [01 · Train](01_train.ipynb) when there is one, and otherwise the
# fast model that ships with `cifar_lib`, so it also runs on its own (as on Colab, where each
# notebook gets a fresh runtime).

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
run_dir = "runs/fast"     # the run folder written by 01_train (figures and results go here too)
if_missing = "shipped"    # no checkpoint in run_dir: "shipped" (the model cifar_lib ships), "train" or "error"
keep_on_drive = False     # on Colab: run folders on Google Drive (where 01_train kept them)
image_paths = None        # photos to classify (None: the sample photos shipped with cifar_lib)
upload = True             # on Colab: offer an upload button (ignored elsewhere)
top_k = 3                 # how many classes to show per photo
threshold = 0.5           # below this top probability the answer is flagged "not confident"
device = "auto"           # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
data_root = None          # only for if_missing="train": folder containing cifar-10-batches-py
download = ON_COLAB       # only for if_missing="train": fetch CIFAR-10 if missing (needs internet)
quick = False             # CI smoke test (the sample photos are few and small: no change needed)

# %%
# %matplotlib inline
import pandas as pd

from cifar_lib.checkpoint import load_run
from cifar_lib.images import ImageError, load_image, sample_images
from cifar_lib.notebook import find_run, keep_runs_on_drive, record, upload_or_paths
from cifar_lib.plots import plot_prediction_grid, plot_preprocessing, plot_topk, save_figure
from cifar_lib.predict import predict

run_dir = keep_runs_on_drive(run_dir, keep_on_drive)
run = find_run(run_dir, if_missing, data_root=data_root, download=download, quick=quick, device=device)
model = load_run(run, device)
paths = image_paths or sample_images()
photos = upload_or_paths(paths) if upload else paths
print("photos:", [getattr(p, "name", str(p)) for p in photos])

# %% [markdown]
# ## From a photo to 32×32, step by step
# A photo takes eight steps to become what the network sees. `preprocessing_steps` returns the
# image after each one: the very code that `load_image` and `to_model_input` run (a test checks
# that its last tensor is theirs), with nothing skipped.
#
# 1. **decoded**: the pixels as the file stores them. A phone stores a portrait photo as a
#    landscape image and writes "rotate me" into its EXIF data;
# 2. **exif_transpose**: rotated (or mirrored) upright, as any photo viewer shows it;
# 3. **rgb**: three 8-bit channels whatever the file had (greyscale, a palette, transparency
#    composited onto white, CMYK, 16 bits);
# 4. **shrink**: longest side at most 1,024 pixels (plenty for 32×32, and fast);
# 5. **crop**: the largest centred square. The seed squashed the whole photo into a square
#    instead, which stretches it; CIFAR-10's photos are square with the object in the middle;
# 6. **resize**: to 32×32 with an antialiasing (Lanczos) filter, which averages the pixels it
#    drops instead of picking some;
# 7. **to_tensor**: an image array is height × width × channel; PyTorch wants channel × height
#    × width;
# 8. **normalize**: to 0–1, then minus the run's per-channel mean and divided by its standard
#    deviation, the numbers it was trained with (saved in its checkpoint).
#
# Each line below is one step: what it produced (a PIL image with its colour mode, or a
# tensor), the shape of its array (height × width × channels for a PIL image), the dtype, and
# the smallest and largest value. The sample photos are stored upright in RGB, so the first
# steps change nothing here; exercise 3 tries a sideways one.

# %%
# NBVAL_CHECK_OUTPUT
import numpy as np
import torch

from cifar_lib.images import preprocessing_steps, to_model_input

steps = preprocessing_steps(photos[0], mean=model.mean, std=model.std)
for step, value in steps:
    a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    kind = "tensor" if isinstance(value, torch.Tensor) else f"PIL {value.mode}"
    print(f"{step:15s} {kind:10s} shape {str(a.shape):15s} {str(a.dtype):8s} "
          f"values {a.min():.3g} to {a.max():.3g}")

# %% [markdown]
# The last step by hand: `(x / 255 − mean) / std`, one mean and one standard deviation per
# colour channel (shaped 3×1×1, so they apply to every pixel), and then the check that the
# library gives the same tensors.

# %%
# NBVAL_CHECK_OUTPUT
x = dict(steps)["to_tensor"]                               # uint8 3×32×32
mean = torch.tensor(model.mean).view(3, 1, 1)
std = torch.tensor(model.std).view(3, 1, 1)
by_hand = (x.float() / 255 - mean) / std
photo = load_image(photos[0])
print("to_tensor equals to_model_input(photo):", torch.equal(x, to_model_input(photo)))
print("normalised by hand equals the library's:", torch.allclose(by_hand, dict(steps)["normalize"]))

# %%
fig = plot_preprocessing(photo)
save_figure(fig, run_dir, "preprocessing")
fig

# %% [markdown]
# ## Predictions
# Top-k classes with probabilities for each photo.

# %%
predictions = predict(model, photos, top_k=top_k, threshold=threshold)
for p in predictions:
    print(p)

# %%
fig = plot_topk(predictions[0])
fig

# %%
fig = plot_prediction_grid(predictions)
save_figure(fig, run_dir, "predictions")
fig

# %% [markdown]
# Photos are not CIFAR-10. Its images are small, centred, single objects; a photo is often a
# scene (a dog beside a bicycle, a herd on a hillside) that becomes a few blurry blobs at 32×32.
# Expect mistakes and low probabilities: this is distribution shift, the everyday reason a
# model that scores 94% on its test set disappoints on your own pictures. The fast recipe's
# label smoothing also keeps its probabilities modest (see the calibration section of
# 03 · Evaluate).
#
# ## Not confident
# None of the ten classes is a giraffe. A classifier still has to output *some* class, so the
# honest thing is to flag answers whose top probability is below the threshold. The run below
# shows how weak that flag is: the dog (called a horse, 19%) and the horse herd (called deer,
# 35%) are flagged, but the giraffe is a "confident" deer at 66%, and the eagle a right and
# confident bird. A softmax probability says how the ten classes compare with each other, not
# whether the photo belongs to any of them: it is no detector of the unknown.

# %%
pd.DataFrame([{"photo": p.name, "top class": p.label, "probability": round(p.probability, 3),
               "confident": p.confident} for p in predictions])

# %% [markdown]
# ## Bad input gets one clear error
# Files that are not images, are empty or truncated, or claim absurd dimensions are refused
# with an `ImageError` before anything is decoded.

# %%
# NBVAL_CHECK_OUTPUT
for bad in [b"", b"this is a text file, not a photo", open(paths[0], "rb").read()[:2000]]:
    try:
        load_image(bad)
    except ImageError as e:
        print("ImageError:", e)

# %%
record({"model": model.name, "run": str(run), "quick": quick,
        "photos": [p.name for p in predictions], "top1": [p.label for p in predictions],
        "probability": [p.probability for p in predictions],
        "confident": [p.confident for p in predictions]},
       run_dir=run_dir, name="real_images_results")

# %% [markdown]
# ## Exercises
# 1. **Squash instead of crop.** Pass `method="squash"` to `predict(...)` in the Predictions
#    cell (and to `preprocessing_steps(...)`): which photos change their top class, and how do
#    the shapes after the `crop` step change?
# 2. **A stricter threshold.** Set `threshold = 0.8` in the parameters cell: which answers are
#    now flagged "not confident"? What threshold flags the giraffe but none of the others?
# 3. **Your own sideways photo.** Set `image_paths = ["path/to/a/portrait/photo.jpg"]` (on
#    Colab: upload one) taken with a phone held upright: compare the shapes after `decoded` and
#    `exif_transpose`. What would the network have seen without that step?
# 4. **Forget to normalise.** In the Predictions cell, replace `model` with
#    `dataclasses.replace(model, mean=(0, 0, 0), std=(1, 1, 1))` (add `import dataclasses`):
#    the same network, fed values 0–1 instead of normalised ones. How many top classes change,
#    and what happens to the probabilities?
# 5. **All ten classes.** Set `top_k = 10`: do the probabilities of each photo sum to 1? Which
#    class gets the least, and does that make sense for the photo?
