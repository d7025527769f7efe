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
# # 3 · Evaluate: what does the model get right, and wrong?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cifar10-course/cifar10-course/blob/main/notebooks/03_evaluate.ipynb)
#
# **What you will learn**
# - that one accuracy number needs an error bar (a 95% confidence interval);
# - per-class accuracy, precision and recall, and the confusion matrix: *which* classes are
#   confused with which;
# - to look at the mistakes the model is most sure of;
# - calibration: when the model says 90%, is it right 90% of the time?
# - what test-time augmentation adds, and how two training recipes compare.
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
compare_with = None       # run folders to compare with (None: the original recipe's run, see below)
tta_level = None          # test-time augmentation: None (the run's), 0 (off), 1 (flip), 2 (+shifts)
data_root = None          # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB       # fetch CIFAR-10 with torchvision if missing (needs internet)
device = "auto"           # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
measure_corruptions = 0   # N > 0: measure the corruptions here on the first N test images
                          # (0: show the record)
quick = False             # CI smoke test: the first 250 test images (50 for the corruptions)

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_lib import load_cifar10
from cifar_lib.evaluation import compare_runs, evaluate_run
from cifar_lib.notebook import find_run, keep_runs_on_drive, record
from cifar_lib.plots import (plot_confusion_matrix, plot_mistakes, plot_per_class,
                             plot_reliability_before_after, save_figure)

run_dir = keep_runs_on_drive(run_dir, keep_on_drive)
run = find_run(run_dir, if_missing, data_root=data_root, download=download, quick=quick, device=device)
train, test = load_cifar10(data_root, download=download)
test = test.subset(250 if quick else None)
report = evaluate_run(run, test, tta_level, device=device, write=False)

# %% tags=["nbval-check-output"]
print(f"model: {report.info['model']}; classes: {', '.join(report.classes)}")
print(f"probabilities: {report.probs.shape[1]} per image, each row sums to 1: "
      f"{bool(abs(report.probs.sum(1) - 1).max() < 1e-4)}")

# %% [markdown]
# ## Accuracy and the confusion matrix, by hand
# `report.probs` holds what the model said about each test image: ten probabilities per image
# (N×10). Everything else in this notebook follows from them and the true labels. The predicted
# class is the most probable one; the accuracy is the fraction of images where it is the true
# class; the confusion matrix counts every (true class, predicted class) pair, so its diagonal
# holds the correct answers.

# %%
probs = report.probs                      # N×10 probabilities, one row per test image
labels = test.labels.cpu().numpy()        # N true classes, 0..9
predicted = probs.argmax(axis=1)          # N predicted classes: the most probable one

accuracy = (predicted == labels).mean()   # the fraction of True

confusion = np.zeros((10, 10), dtype=np.int64)
for true_class, predicted_class in zip(labels, predicted):
    confusion[true_class, predicted_class] += 1   # row: true class, column: prediction

print(f"accuracy by hand: {accuracy:.4f} ({(predicted == labels).sum():,} of {len(labels):,})")
pd.DataFrame(confusion, index=report.classes, columns=report.classes)

# %% [markdown]
# The library (`cifar_lib.evaluation.confusion_matrix`) counts the pairs with one `np.bincount`
# instead of a Python loop: same numbers, much faster. The accuracy is also the diagonal's share
# of all the counts, and a class's accuracy (its recall) is its diagonal cell over its row.

# %% tags=["nbval-check-output"]
recall = confusion.diagonal() / confusion.sum(axis=1)
print("hand-written confusion matrix equals the library's:",
      np.array_equal(confusion, report.confusion))
print("accuracy by hand equals the library's:", accuracy == report.accuracy)
print("accuracy equals trace / total of the matrix:",
      accuracy == confusion.trace() / confusion.sum())
print("per-class accuracy (diagonal / row) equals the library's:",
      np.allclose(recall, [r["recall"] for r in report.per_class]))

# %% [markdown]
# ## How sure is that number?
# The test images are a sample: another 10,000 photos of the same kinds would give a slightly
# different accuracy. The 95% (Wilson) interval is built so that, 19 times out of 20, it
# contains the accuracy the model would have on all such photos.

# %%
low, high = report.ci
print(f"{report.info['model']} from {run}, TTA level {report.info['tta_level']}: "
      f"accuracy {report.accuracy:.2%} on {report.n:,} test images (95% CI {low:.2%} – {high:.2%})")

# %% [markdown]
# `01_train` measured its accuracy as `fit` does: in the precision it trained with (bf16 on
# recent GPUs and on CPUs with native bf16, fp16 on older GPUs) and, for the fast recipe, with
# TTA only on the least confident images (`tta_fraction`). Here the model runs in float32 and
# every image gets TTA, so the two can differ by a few images: the same model, measured a
# little differently.
#
# ## Per class
# Precision: of the images predicted as this class, how many are? Recall (= per-class
# accuracy): of the images of this class, how many were found?

# %%
pd.DataFrame(report.per_class).set_index("class").round(3)

# %%
fig = plot_per_class(report.per_class)
save_figure(fig, run_dir, "per_class")
fig

# %% [markdown]
# ## Confusion matrix
# Rows are the true class, columns the prediction. Every class has the same number of test
# images, so the counts compare directly from row to row.

# %%
fig = plot_confusion_matrix(report.confusion, report.classes)
save_figure(fig, run_dir, "confusion_counts")
fig

# %%
pd.DataFrame(report.most_confused, columns=["true", "predicted", "count"]).head(10)

# %% [markdown]
# ## The most confident mistakes
# Wrong answers given with high confidence: some are the model's fault, some are odd images,
# and a few are arguably mislabelled.

# %%
fig = plot_mistakes(test.images, report.mistakes[:24])
save_figure(fig, run_dir, "confident_mistakes")
fig

# %% [markdown]
# ## What the network looks at
# Why did the network call that dog a cat? Grad-CAM (Selvaraju et al., 2017) gives a rough
# answer: take the last convolutional block's feature maps (3×3 for the fast recipe's network,
# 8×8 for the original recipe's), weight each channel by how much the class score grows with
# it (its average gradient), add them up, keep the positive part and stretch it to 32×32. Red
# is where the evidence for the chosen class lies ([the paper](https://arxiv.org/abs/1610.02391)).
# For each confident mistake: the evidence for what the network said (upper rows) and for the
# true class (lower rows). The maps come from one pass without test-time augmentation, so a
# title's probability can differ from the report's.

# %%
import torch

from cifar_lib.attribution import cam_for_run, cam_titles
from cifar_lib.plots import plot_grad_cam

worst = [m["index"] for m in report.mistakes[:8]]
images, truth = test.images[worst], test.labels[worst]
said_maps, said, said_probs = cam_for_run(run, images, device=device)
true_maps, _, _ = cam_for_run(run, images, target=truth, device=device)
fig = plot_grad_cam(torch.cat([images, images]), torch.cat([said_maps, true_maps]),
                    cam_titles(report.classes, said, said_probs, truth)
                    + [f"evidence for {report.classes[t]}" for t in truth.tolist()],
                    title="confident mistakes: evidence for the answer (top), for the truth (bottom)")
save_figure(fig, run_dir, "grad_cam_mistakes")
fig

# %% [markdown]
# ## Calibration: can you trust the probabilities?
# Predictions are grouped by confidence; a perfectly calibrated model's bars sit on the
# diagonal. The expected calibration error (ECE) is the average gap, weighted by group size.
# Bars above the diagonal mean the model is right more often than it claims (under-confident),
# bars below it mean over-confident. The fast recipe trains with label smoothing 0.2: its
# targets never ask for more than 82% on the true class, so it learns to be modest.
#
# **Temperature scaling** ([Guo et al., 2017](https://arxiv.org/abs/1706.04599)) fixes that
# with one number: divide the logits by a temperature T before the softmax. T < 1 sharpens the
# probabilities, T > 1 softens them; the ranking, and so every prediction and the accuracy,
# stays the same.
#
# **Which images choose T?** Not the test images: a number measured on the images that chose
# it flatters it, and the test set is there to measure, once. Every recipe, by default, holds
# out a *validation split*: 5,000 of the 50,000 training images (500 of each class, the same
# ones for every run), which it never trains on. That is enough to pin down one temperature and
# one threshold, and costs the training little (the README gives the measured price). T is fitted
# on the validation split; everything below is measured on the test set. First by hand:

# %%
import torch.nn.functional as F

from cifar_lib.calibration import expected_calibration_error, fit_temperature
from cifar_lib.checkpoint import load_run
from cifar_lib.data import split_validation, validation_size
from cifar_lib.inference import predict_logits

model = load_run(run, device)
held_out = validation_size(len(train), model.config["val_fraction"])  # as fit held them out
trained_on, validation = split_validation(train, held_out)
print(f"held out of training: {len(validation):,} validation images "
      f"(trained on the other {len(trained_on):,})")
validation = validation.subset(250 if quick else None)      # quick: the first 250 of them
logits_val = predict_logits(model.model, validation.images, model.mean, model.std,
                            tta_level=model.tta_level)      # 5,000 × 10, the run's own TTA
logits_test = predict_logits(model.model, test.images, model.mean, model.std,
                             tta_level=model.tta_level)
T = fit_temperature(logits_val, validation.labels)          # argmin_T NLL(softmax(logits / T))
before = F.softmax(logits_test, dim=1)                      # what the network says
after = F.softmax(logits_test / T, dim=1)                   # the same, at temperature T
print(f"T = {T:.3f} (fitted on the validation split)")
print(f"test set: ECE {expected_calibration_error(before, test.labels):.2%} before, "
      f"{expected_calibration_error(after, test.labels):.2%} after; predictions unchanged: "
      f"{bool((before.argmax(1) == after.argmax(1)).all())}")

# %% [markdown]
# The library's `calibrate_run` does exactly this. It saves T in the run folder as
# `calibration.json` (the models cifar_lib ships come with theirs), where `predict`,
# `evaluate_run` and the command line find it: from then on they print calibrated probabilities
# and say so. `python -m cifar_lib train` calibrates at the end of every run. The check that
# both agree, then the same for the original recipe:

# %% tags=["nbval-check-output"]
from cifar_lib.calibration import calibrate_run

# quick: T from 250 images, so it is shown but not saved over the run's own calibration.json
calibration = calibrate_run(model, validation, test, device=device, write=False if quick else None)
print("the library's temperature equals the one by hand:",
      abs(calibration.temperature - T) < 1e-6)
print("the library's ECE after equals the one by hand:",
      abs(calibration.ece_after - expected_calibration_error(after, test.labels)) < 1e-6)

# %%
fig = plot_reliability_before_after(calibration.bins_before, calibration.bins_after,
                                    calibration.ece_before, calibration.ece_after,
                                    title=f"{report.info['model']}: the test set, "
                                          f"T = {calibration.temperature:.2f}")
save_figure(fig, run_dir, "reliability")
fig

# %%
# The original recipe's run that 01_train writes beside run_dir, else the one cifar_lib ships.
original_run = find_run(f"{run_dir}-original", if_missing, recipe="original", data_root=data_root,
                        download=download, quick=quick, device=device)
original_model = load_run(original_run, device)
original_calibration = calibrate_run(original_model, validation, test, device=device,
                                     write=False if quick else None)
plot_reliability_before_after(original_calibration.bins_before, original_calibration.bins_after,
                              original_calibration.ece_before, original_calibration.ece_after,
                              title=f"original recipe: the test set, T = "
                                    f"{original_calibration.temperature:.2f}")

# %%
calibrations = {f"{Path(run_dir).name} (this run)": calibration,
                "original recipe": original_calibration}
pd.DataFrame([{"model": name, "temperature": c.temperature, "ECE before": c.ece_before,
               "ECE after": c.ece_after, "NLL before": c.nll_before, "NLL after": c.nll_after,
               "accuracy (test)": c.accuracy,
               "'not confident' below": (c.threshold or {}).get("threshold"),
               "kept (validation)": (c.threshold or {}).get("coverage"),
               "kept (test)": (c.threshold or {}).get("test_coverage"),
               "right when kept (test)": (c.threshold or {}).get("test_accuracy")}
              for name, c in calibrations.items()]).round(4)

# %% [markdown]
# The last four columns are what `04_real_images` uses: the confidence threshold above which
# the calibrated model was right 99% of the time on the validation split, the share of images
# it keeps there, and what the same threshold does on the test images, which did not choose it.
# A threshold chosen this way says what "confident" promises; 0.5 promises nothing.
#
# ## Robustness: photos are blurred, noisy, compressed, dark
# A test set of clean images flatters a model.
# [Hendrycks & Dietterich (2019)](https://arxiv.org/abs/1903.12261) measured networks on
# CIFAR-10-C: the test set under fifteen kinds of damage at five severities. `cifar_lib` makes
# ten kinds of such copies on the fly, seeded, with torchvision's image operations. One test
# image under four of them (noise, blur, JPEG, low contrast), at severities 1, 3 and 5:

# %%
from cifar_lib.plots import plot_corruption_examples

plot_corruption_examples(test.images[7], ["gaussian_noise", "defocus_blur", "jpeg", "contrast"],
                         severities=(1, 3, 5))

# %% [markdown]
# The committed record, measured with `make bench-robustness` (`python -m cifar_lib bench
# robustness`: both shipped models, no test-time augmentation, the first 2,000 test images,
# 10 corruptions × 5 severities):

# %%
from IPython.display import Markdown, display

from cifar_lib import robustness
from cifar_lib.plots import plot_corruption_heatmap

measured = robustness.read_record()
print(f"measured with `{measured['command']}` on {measured['images']:,} test images")
robust_summary = {name: {"clean": s["clean"], "mean corrupted": s["mean_corrupted"]}
                  for name, s in measured["summary"].items()}
display(pd.DataFrame(robust_summary).T.round(4))
plot_corruption_heatmap(measured["rows"])

# %% [markdown]
# Clean accuracy does not predict robustness. The fast model, far better on clean images,
# collapses under pixel noise, while the original one, much weaker, loses far less to it and
# suffers most from low contrast and darkness. A likely reason for the first: the fast
# model's whitening layer divides each direction of a 2×2 patch by the square root of its
# variance, so the fine-grained directions, where natural images have little energy and pixel
# noise has as much as anywhere, are amplified the most. (Training with noise as one more
# augmentation is the usual remedy; it costs some clean accuracy.)
#
# With `measure_corruptions = N` the next cell measures this run and the original one here, on
# the first N test images (slow on a CPU: start with a few hundred).

# %%
from cifar_lib.robustness import corruption_accuracy, summarize

n_corrupt = 50 if quick else measure_corruptions
if n_corrupt:
    rows = corruption_accuracy([run, original_run], test.subset(n_corrupt), seed=0,
                               device=device)
    display(pd.DataFrame(summarize(rows)).T.round(4))
    display(plot_corruption_heatmap(rows))

# %% [markdown]
# ## With and without test-time augmentation, and against other runs
# Each run is evaluated without TTA and with its own TTA level (if it has one). Only the
# accuracy compares TTA alone: a run's temperature was fitted for its own TTA level, so its row
# without TTA is uncalibrated (temperature 1), and its NLL (negative log-likelihood, the loss on
# the test images) and ECE show calibration's effect as well.

# %%
others = [original_run] if compare_with is None else list(compare_with)
runs = [run] + [r for r in others if (Path(r) / "checkpoint.pt").is_file()]
missing = [r for r in others if r not in runs]
if missing:
    print(f"not found, left out: {missing} (train them with 01_train)")
comparison = pd.DataFrame(compare_runs(runs, test, device=device))
comparison.round(4)

# %%
record({"model": report.info["model"], "run": str(run), "quick": quick,
        "tta_level": report.info["tta_level"],
        "test_images": report.n, "accuracy": report.accuracy, "ci95": list(report.ci),
        "ece": calibration.ece_before, "ece_calibrated": calibration.ece_after,
        "temperature": calibration.temperature, "nll": report.nll,
        "calibration": {name: {"temperature": c.temperature, "ece": c.ece_before,
                               "ece_calibrated": c.ece_after}
                        for name, c in calibrations.items()},
        "mean_corrupted_accuracy": {name: s["mean corrupted"]
                                    for name, s in robust_summary.items()},
        "worst_class": min(report.per_class, key=lambda r: r["recall"])["class"],
        "most_confused": list(report.most_confused[0]),
        "comparison": comparison.to_dict(orient="records")},
       run_dir=run_dir, name="evaluate_results")

# %% [markdown]
# ## Exercises
# 1. **How wide is the error bar?** Set `quick = True` (250 test images instead of 10,000):
#    how much wider is the 95% interval? Roughly how many test images would you need to tell
#    apart two runs whose accuracies differ by 0.2 points? *Hint:* the interval's half-width
#    shrinks as 1/√N.
#    <details><summary>Answer</summary>About √40 ≈ 6.3 times wider. At 94% the 95% half-width
#    is about 1.96·√(0.94·0.06/N): to bring it down to 0.1 points takes N ≈ 200,000 images,
#    twenty times CIFAR-10's test set; two runs 0.2 points apart on 10,000 images are within
#    noise.</details>
# 2. **Rows or columns?** In the by-hand cell, write `confusion[predicted_class, true_class]`
#    instead: which agreement checks fail, which still pass, and why does the accuracy not care?
#    <details><summary>Answer</summary>The matrix is transposed: the check against the
#    library's matrix and the per-class check fail, the two accuracy checks still pass, because
#    the diagonal (the correct answers) is the same either way.</details>
# 3. **Top-2 accuracy by hand.** Below `predicted = ...`, add
#    `top2 = np.argsort(probs, axis=1)[:, -2:]` and count the images whose label is in their
#    row, `(top2 == labels[:, None]).any(axis=1).mean()`: which classes gain the most?
#    *Hint:* look at the most confused pairs above.
# 4. **Test-time augmentation.** Set `tta_level = 0`, then `2`: how much does each change the
#    accuracy, and is the difference larger than the 95% interval?
# 5. **Which damage hurts most, and whom?** Set `measure_corruptions = 500` and compare the
#    two models' rows in the heatmap: which corruption costs the fast model the most, and the
#    original one? Look at the example images above: which of these damages would a phone
#    photo in the dark suffer?
