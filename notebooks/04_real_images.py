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
# ## From a photo to 32×32
# The seed squashed the whole photo into 32×32; a centre crop keeps the proportions.

# %%
# NBVAL_CHECK_OUTPUT
from cifar_lib.images import to_model_input

photo = load_image(photos[0])
x = to_model_input(photo)
print(f"model input: {tuple(x.shape)} {x.dtype}, values {int(x.min())}–{int(x.max())}")

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
# honest thing is to flag answers whose top probability is below the threshold.

# %%
pd.DataFrame([{"photo": p.name, "top class": p.label, "probability": round(p.probability, 3),
               "confident": p.confident} for p in predictions])

# %% [markdown]
# ## Bad input gets one clear error
# Files that are not images, are empty or truncated, or claim absurd dimensions are refused
# with an `ImageError` before anything is decoded.

# %%
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
