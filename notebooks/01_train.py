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
#   out by hand for the original notebook's network and then checked, bit for bit, against the
#   library's `fit`;
# - the fast recipe, written out by hand one idea at a time: a whitening first layer, the
#   network around it, flips, shifts, small crops and colour jitter of whole batches, label
#   smoothing, Muon's orthogonalised steps for the filters and Nesterov SGD for the rest, the
#   hardest images, and the training step that puts them together, checked, bit for bit,
#   against `fit`;
# - what every knob of the fast recipe does, and what each trick buys, measured (the ablation);
# - how long a run takes on *your* hardware, measured before it starts;
# - how a training run is saved (checkpoint + metrics + history) so the next lessons can use it.
#
# The fast recipe builds on Keller Jordan's airbench94 ("94% on CIFAR-10 in 3.29 seconds on a
# single GPU", [arXiv:2404.00498](https://arxiv.org/abs/2404.00498)) and its Muon variant
# ([Muon: An optimizer for hidden layers in neural
# networks](https://kellerjordan.github.io/posts/muon/)); its colour jitter comes from the
# [CIFAR-10 speedrun](https://github.com/hiverge/cifar10-speedrun).
#
# Training the fast recipe takes minutes on a GPU and longer on a CPU, how much longer depending
# on the CPU and its bf16 support; the cell before training measures yours. On
# Colab, ask for a GPU (*Runtime → Change runtime type → GPU*), and set `keep_on_drive = True`
# to keep the trained run on Google Drive for the next lessons (each notebook gets a fresh
# runtime); without it, lessons 02–04 use the fast model that ships with `cifar_lib`.
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
run_dir = "runs/fast"    # the run folder: checkpoint, metrics, history (the next lessons read it)
keep_on_drive = False    # on Colab: keep run folders on Google Drive (mounted only when True)
recipe = "fast"          # "fast", "airbench94" (its anchor, slower), "short", "tiny" or "original"
                         # (the original notebook's); what each reached: below
model = None             # override the recipe's model: "simple_cnn" or "airbench" (None: recipe's)
epochs = None            # override the number of epochs (None: the recipe's own)
batch_size = None        # override the batch size (None: the recipe's own)
lr = None                # override the peak learning rate (None: the recipe's own)
seed = 0                 # the random seed, for everything: same seed, same result on the same CPU
data_root = None         # folder containing cifar-10-batches-py (None: $CIFAR10_ROOT or ~/.cache)
download = ON_COLAB      # fetch CIFAR-10 with torchvision if missing (needs internet)
device = "auto"          # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps"
compare_original = True  # also train the original recipe, to compare with
retrain = False          # False: a finished run of these settings in run_dir is loaded
rerun_ablation = False   # re-measure the ablation table here (cheap: 1 seed, 1 epoch, narrow net)
quick = False            # CI smoke test: 2,048 training and 500 test images, one epoch

# %%
# %matplotlib inline
import torch
from IPython.display import display

from cifar_lib import build_model, configure, count_parameters, fit, load_cifar10, select_device
from cifar_lib.data import class_counts
from cifar_lib.notebook import keep_runs_on_drive, record
from cifar_lib.plots import (LiveTrainingCurves, image_grid, plot_ablation_differences,
                             plot_augmented_batch, plot_class_counts, plot_label_smoothing,
                             plot_learning_rates, plot_training_curves, plot_tta_views,
                             plot_whitening)

run_dir = keep_runs_on_drive(run_dir, keep_on_drive)
print(f"torch {torch.__version__}, device: {select_device(device)}, CPU threads: {torch.get_num_threads()}")

# %% [markdown]
# ## The data
# `load_cifar10` reads the batch files into memory as `uint8` tensors of shape N×3×32×32: the
# whole training set is only 150 MB, so there is no need for a `DataLoader` at all.

# %% tags=["nbval-check-output"]
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
# ## The original network, layer by layer
# The original recipe's network is the original notebook's CNN (`SimpleCNN` in
# `cifar_lib.models`), small enough to build right here. Three times over: a 3×3 **convolution**
# slides learnt filters over the image (padding 1 keeps the size), **ReLU** keeps the positive
# responses, and 2×2 **max-pooling** keeps the largest of each 2×2 block, halving height and
# width. Then the 128×4×4 feature map is **flattened** into 2,048 numbers and two **linear**
# layers map it to 10 scores (*logits*), one per class. The shapes after each layer tell the
# story: fewer pixels, more channels. The layers get the names `SimpleCNN` gives its own, so
# that the library's weights can be loaded into this network.

# %% tags=["nbval-check-output"]
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

# %% tags=["nbval-check-output"]
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

from cifar_lib.batches import BatchIterator, resize_window
from cifar_lib.train import seed_everything

loop_config = configure("original", seed=seed, device="cpu", epochs=1, train_subset=1024,
                        test_subset=100, eval_every=0,
                        val_fraction=0)  # fit holds none out either: the same 1,024 images
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
# `fit` runs this same loop. Same seed, same data, same recipe: on a CPU it must end with
# exactly the same weights. (Its `train_step` also does what the fast recipe switches on; the
# fast recipe's loop is written out by hand below, and checked the same way.)

# %% tags=["nbval-check-output"]
def identical(a: dict, b: dict) -> bool:
    """Two state dicts: the same tensors under the same names, bit for bit."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


fitted = fit(loop_config, train, test, progress=False).model.state_dict()
print(f"{len(fitted)} weight tensors compared")
print("fit and the hand-written loop give identical weights:",
      identical(loop_net.state_dict(), fitted))

# %% [markdown]
# ## The fast recipe, by hand
# In ten epochs the fast recipe goes far beyond what the original reaches in two (the comparison
# after training runs both and prints their accuracies). No single trick does it. Each idea
# below comes with its few lines of code and a check against the library code that `fit` runs;
# then the whole training step is written out and checked against `fit`, as the original loop
# was. These cells use the fast recipe whatever `recipe` is set to; its knobs are all in one
# table at the end of the section.
#
# ### A whitening first layer
# Neighbouring pixels, and the three colours of one pixel, are strongly correlated: a 2×2 patch
# (12 numbers) has almost all its variance in one direction, its overall brightness, and very
# little in the fine details that tell a cat from a dog. The fast net's first layer is a 2×2
# convolution whose 12 filters are fitted to the data *before* training, not learnt: the
# eigenvectors of the patch covariance C = V Λ Vᵀ, each divided by √(λ + ε). Its outputs have
# covariance ≈ the identity: every direction reaches the next layer at the same scale, so SGD
# does not have to discover the faint ones slowly. ε = 5·10⁻⁴ deliberately damps the faintest
# directions (mostly noise) instead of blowing them up. The filters stay frozen; each also appears
# negated (24 channels), so the GELU after it (a smooth ReLU: positive inputs pass nearly
# unchanged, negative ones are squashed towards 0) loses nothing. Here are the filters computed
# by hand, checked against the library's `Whitening` layer, and the covariance before and after.

# %% tags=["nbval-check-output"]
from cifar_lib.models import Whitening

fast = configure("fast", seed=seed)


def whitening_filters(x: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """The 24 whitening filters (24×3×2×2) for normalised images x (N×3×H×W)."""
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1)                   # N×3×31×31×2×2
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)   # every 2×2 patch: 12 numbers
    patches = patches - patches.mean(0)
    covariance = patches.T @ patches / len(patches)                # C: 12×12
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())  # C = V Λ Vᵀ, faintest first
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).float().view(12, 3, 2, 2)
    return torch.cat([filters, -filters])                          # and each one negated


fitting = normalize(train.images[:5000], fast.mean, fast.std)    # fit fits it to 5,000 images
held_out = normalize(test.images[:1000], fast.mean, fast.std)    # images it never saw
whitening = Whitening()
whitening.init_from(fitting)
print("the same filters as cifar_lib's Whitening.init_from:",
      torch.equal(whitening_filters(fitting), whitening.weight))
before, after = whitening.covariances(held_out)
off_diagonal = ~torch.eye(12, dtype=torch.bool)
print(f"largest covariance between two different patch numbers: before "
      f"{before[off_diagonal].max():.2f}, between two whitened directions after "
      f"{after[off_diagonal].abs().max():.2f}")

# %%
plot_whitening(whitening, held_out)

# %% [markdown]
# ### The network around it
# After the whitening layer and a GELU come three groups of conv 3×3 → max-pool 2 →
# BatchNorm → GELU → conv 3×3 → BatchNorm → GELU (each group halves height and width and
# widens the channels: 64, 256, 256), a global max-pool (the largest response of each channel
# anywhere in the image), and a linear head. Four details matter:
# - **Dirac initialisation**: each convolution starts as the identity on its input channels (a
#   filter that passes channel *k* through unchanged), the rest random. The first steps then
#   get useful gradients through every layer, and the whitened input is not scrambled at once.
# - **BatchNorm with a frozen scale**: it normalises each channel over the batch and adds a
#   learnt shift (its bias); its learnable scale stays at 1, because the next convolution can
#   scale the channel just as well, and a second scale only slows training down. Its
#   `momentum=0.4` makes the running statistics used at test time follow the fast-changing
#   weights closely.
# - No convolution has a bias: the BatchNorm after it adds one anyway.
# - **The head's 1/9 scale**: the logits are the linear layer's outputs divided by 9. At the
#   start the logits are then small (every class about equally likely), and since an SGD step on
#   the head's weights moves the logits by the scale squared times the rate, the scale sets the
#   head's effective learning rate.
#
# Written out, with the library's parameter names (it is an `nn.Sequential` too), and checked:
# from the same seed it has exactly the library's weights, and gives exactly its outputs. Its
# 3×3 convolutions are the library's `Conv3x3`, an `nn.Conv2d` that computes the same
# convolution but trains faster on a CPU on the smallest maps: there the CPU's convolution
# routines are slow for the little work they do, so `Conv3x3` uses matrix products instead (in
# float32 the whole convolution as one, in bf16 the weight gradient as nine, one per filter tap).

# %%
from cifar_lib.models import Conv3x3  # nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


def conv_group(c_in: int, c_out: int) -> nn.Sequential:
    """conv 3×3 → max-pool 2 → BatchNorm → GELU → conv 3×3 → BatchNorm → GELU:
    c_in → c_out channels, height and width halved."""
    group = nn.Sequential(
        Conv3x3(c_in, c_out),  # no bias: BatchNorm adds one
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out, momentum=0.4, eps=1e-12),
        nn.GELU(),
        Conv3x3(c_out, c_out),
        nn.BatchNorm2d(c_out, momentum=0.4, eps=1e-12),
        nn.GELU())
    for conv in (group[0], group[4]):  # Dirac: filter k passes input channel k through
        nn.init.dirac_(conv.weight.data[:conv.in_channels])
    for norm in (group[2], group[5]):  # the scale stays 1: only the shift (bias) learns
        norm.weight.requires_grad_(False)
    return group


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def fast_net(widths=(64, 256, 256)) -> nn.Sequential:
    w1, w2, w3 = widths
    whitening = nn.Conv2d(3, 24, kernel_size=2)  # filters: whitening_filters, then frozen
    whitening.weight.requires_grad_(False)
    return nn.Sequential(whitening, nn.GELU(),                   # 3×32×32 → 24×31×31
                         conv_group(24, w1),                      # → w1×15×15
                         conv_group(w1, w2),                      # → w2×7×7
                         conv_group(w2, w3),                      # → w3×3×3
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(),   # → w3: each channel's largest
                         nn.Linear(w3, 10, bias=False), Scale(1 / 9))  # → 10 logits


# %% tags=["nbval-check-output"]
def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


seed_everything(seed)
my_fast = fast_net(fast.model_kwargs["widths"])
with torch.no_grad():
    my_fast[0].weight.copy_(whitening_filters(fitting))
    my_fast[0].bias.zero_()
seed_everything(seed)                                  # the same seed: the same random filters
library_fast = build_model(fast.model, **fast.model_kwargs)   # cifar_lib's AirbenchNet
library_fast.whitening.init_from(fitting)
print(f"parameters: built here {count_parameters(my_fast):,} ({trainable(my_fast):,} trained), "
      f"cifar_lib's {count_parameters(library_fast):,} ({trainable(library_fast):,} trained)")
print("the same weights from the same seed:",
      identical(my_fast.state_dict(), library_fast.state_dict()))
x = normalize(train.images[:16], fast.mean, fast.std)
with torch.no_grad():
    print("identical outputs for 16 training images:", torch.equal(my_fast(x), library_fast(x)))

# %% [markdown]
# ### Flips, shifts, small crops and colour jitter, on whole batches
# Augmentation makes new training images out of old ones: a mirrored car is still a car, and so
# is a car two pixels to the left. `BatchIterator` does it to whole batches on the device, with
# the random draws made once per epoch from the seed:
# - **alternating flips**: one coin per image, tossed once; even epochs mirror the images whose
#   coin came up heads, odd epochs the others, so every image is seen both ways every two
#   epochs (random flips would show some images the same way several epochs running);
# - **shifts**: each image moves by (dy, dx) pixels, both in [−2, 2], its border filled by
#   reflection;
# - **small crops first**: a convolution's cost grows with the number of pixels, so the first
#   six of the ten epochs train on 24×24 images (56% of the pixels) while the net learns coarse
#   features, and the last four on whole images, so it ends at the test images' size (the
#   whitened image is smaller by one pixel, and the global max-pool takes any size). Each crop
#   is a random square **window** of the image, its side between ¾ of the image's and
#   all of it, shrunk to 24×24 pixels (bilinear interpolation, `resize_window`): it shows more of
#   the object than a 24×24 square cut out of it would, at the same cost;
# - **colour jitter**: each image's normalised values get a brightness shift (up to ±0.14) and
#   then a contrast factor (1 ± 0.13), the speedrun's values: nearly free.
#
# First the alternating flips, drawn by hand; then one batch made by hand from the epoch's
# draws, checked against the batch `BatchIterator` gives `fit`.

# %% tags=["nbval-check-output"]
sample = train.subset(64)
draws = BatchIterator(sample, 8, mean=fast.mean, std=fast.std, shuffle=True, flip=fast.flip,
                      translate=fast.translate, seed=seed, brightness=fast.brightness,
                      contrast=fast.contrast, crop_window=fast.crop_window)
coin = torch.rand(len(sample), generator=torch.Generator().manual_seed(seed)) < 0.5  # per image
for epoch in (0, 1):
    draws.epoch = epoch
    order, flips, shifts = draws.epoch_draws()  # per position: image, mirrored or not, (dy, dx)
    by_hand = coin[order] ^ (epoch % 2 == 1)    # heads in even epochs, tails in odd ones
    print(f"epoch {epoch}: {int(flips.sum())} of {len(flips)} mirrored; the same as by hand: "
          f"{torch.equal(flips, by_hand)}")

# %% tags=["nbval-check-output"]
draws.epoch, draws.crop_size = 0, fast.crop_size_at(0)   # the first epoch: 24×24 images
order, flips, shifts = draws.epoch_draws()
windows = draws.window_draws()                           # each window's side, column and row
brightness, contrast = draws.jitter_draws()              # each image's shift and factor
library_x, library_y = next(iter(draws))                 # the epoch's first batch of 8

n, pad, size = 8, fast.translate, draws.crop_size
x = normalize(sample.images[order[:n]], fast.mean, fast.std)           # 8×3×32×32
x = torch.where(flips[:n].view(n, 1, 1, 1), x.flip(-1), x)             # mirror the chosen ones
x = F.pad(x, (pad, pad, pad, pad), mode="reflect")                     # 8×3×36×36
x = torch.stack([im[:, pad + dy:pad + dy + 32, pad + dx:pad + dx + 32]  # shift by (dy, dx)
                 for im, (dy, dx) in zip(x, shifts[:n].tolist())])
side = fast.crop_window + (1 - fast.crop_window) * windows[:n, 0]     # in [¾, 1] of 32 pixels
x = resize_window(x, windows[:n], fast.crop_window, size)               # 8×3×24×24
x = (x + brightness[:n].view(n, 1, 1, 1)) * contrast[:n].view(n, 1, 1, 1)
print(f"a batch by hand: {tuple(x.shape)}; the same as BatchIterator's:",
      torch.equal(x, library_x) and torch.equal(sample.labels[order[:n]], library_y))
print("the windows' sides, in pixels:", [round(32 * s, 1) for s in side.tolist()])
sizes = [fast.crop_size_at(epoch) or 32 for epoch in range(fast.epochs)]  # None: whole image
print("image size by epoch:", sizes)

# %% [markdown]
# Below: eight training images as they are, then as the model gets them (whole images) in two
# consecutive epochs: each mirrored in exactly one of them, and shifted anew every epoch.

# %%
plot_augmented_batch(train, fast, n=8)

# %% [markdown]
# ### Label smoothing
# With one-hot targets the loss only reaches zero when the true class's logit is infinitely far
# above the others, so training keeps pushing the logits apart: an over-confident net. With
# label smoothing s = 0.2 the target is 1 − s + s/10 = 0.82 for the true class and s/10 = 0.02
# for each of the others; the loss is then lowest at a finite margin, log(0.82 / 0.02) ≈ 3.7,
# and it can never fall below the entropy of the target itself. Here are the smoothed targets
# by hand, checked against the library and against PyTorch's
# `F.cross_entropy(..., label_smoothing=0.2)`, which the training step calls.

# %% tags=["nbval-check-output"]
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
loss_floor = -(targets[0] * targets[0].log()).sum()
print(f"the lowest training loss possible with these targets: {loss_floor:.3f}")

# %%
plot_label_smoothing(fast.label_smoothing, true_class=int(y[0]), classes=train.classes)

# %% [markdown]
# ### Muon for the filters, Nesterov SGD for the rest
# The optimiser treats the parameters in four groups, each with its own learning rate. All of
# them use momentum: a step follows a decaying sum of the past gradients rather than the newest
# alone, and Nesterov's variant takes that step from one step further along it.
# - **the conv filters: Muon.** A filter bank's gradient, reshaped to the matrix it is in the
#   convolution (out × in·3·3), is dominated by a few large directions; SGD's step follows them
#   and barely moves along the rest. Muon keeps SGD's (Nesterov) momentum but replaces the step
#   by the nearest *orthogonal* matrix: the same singular vectors, every singular value set to
#   about 1, so rare directions move as much as common ones. An SVD would give it exactly;
#   three Newton–Schulz iterations, only matrix products, give it nearly (not exactly 1, as the
#   cell below prints, but close enough for training), after dividing by the norm so that every
#   singular value is at most 1: x ← a·x + (b·G + c·G²)·x with G = x·xᵀ. Since every step then
#   has about the same size whatever the gradient's, the weights are also *renormalised* before
#   each step (each filter bank's norm reset to √out): only their direction learns, and the
#   steps keep their relative size all run long.
# - **the BatchNorm biases: Nesterov SGD at 64× the head's rate** (`bias_lr_scale`): a shift
#   added to a whole channel needs a far larger step than a single weight to make a difference.
# - **the whitening bias**: the same, but its rate falls to 0 over the first three epochs
#   (`whiten_bias_epochs`) instead of the whole run, and after them it is frozen (no gradient
#   is even computed): it helps the first epochs find the right offsets, then only adds noise.
# - **the head**: Nesterov SGD, with a little weight decay (its weights shrink by lr × decay
#   each step; the biases' decay is set so that they shrink by the same amount).
#
# All four rates follow one shape: from the peak at the first step down linearly to 0 at the
# last (the whitening bias's at the end of its three epochs), so that the last steps settle
# into a minimum instead of bouncing around it. There is no warm-up: Muon's steps have a fixed
# size, and the fresh net can take them.
#
# First Newton–Schulz by hand, on a random matrix of the shape of the first convolution's
# gradient (64 filters of 24 channels × 3 × 3), checked against the library's `orthogonalize`.
# In fp32 the library runs the same polynomial on the small rows × rows matrix x·xᵀ alone and
# multiplies x once at the end: the same result up to rounding, for about half the work on
# the wide filter banks of the later layers.

# %% tags=["nbval-check-output"]
from cifar_lib.muon import NS_COEFFICIENTS, orthogonalize


def newton_schulz(g: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """g (rows × cols, rows ≤ cols) with every singular value pushed towards 1."""
    a, b, c = NS_COEFFICIENTS
    x = g / (g.norm() + 1e-7)                  # every singular value ≤ 1
    for _ in range(steps):
        gram = x @ x.T                         # rows × rows
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


g = torch.randn(64, 24 * 3 * 3, generator=torch.Generator().manual_seed(0))  # out × in·3·3
g[:, :8] *= 20                                 # a few strong directions, as in real gradients
before, after = torch.linalg.svdvals(g / g.norm()), torch.linalg.svdvals(newton_schulz(g))
print(f"singular values before: {before.min():.4f} to {before.max():.3f}; "
      f"after: {after.min():.2f} to {after.max():.2f}")
print("the same as cifar_lib's orthogonalize:",
      torch.allclose(newton_schulz(g), orthogonalize(g), atol=1e-5))

# %% [markdown]
# The schedule by hand, checked against the library's `lr_multiplier`, and every group's
# learning rate over a full run (a logarithmic axis: the rates differ by more than two orders
# of magnitude).

# %% tags=["nbval-check-output"]
import numpy as np

from cifar_lib.train import lr_multiplier, split_for


def decay(step: int, steps: int) -> float:
    """The fast recipe's schedule: 1 at step 0, falling linearly to 0 at ``steps`` (and after)."""
    return float(np.interp(step, [0, steps], [1.0, 0.0]))


# fit trains on what the validation split leaves, in whole batches
steps_per_epoch = len(split_for(fast, train)[0]) // fast.batch_size
total_steps = fast.epochs * steps_per_epoch
print("decay is cifar_lib's lr_multiplier at every step:",
      all(decay(s, total_steps) == lr_multiplier(fast, s, total_steps) for s in range(total_steps)))
print(f"peak learning rates: filters (Muon) {fast.muon_lr:g}, head {fast.lr:.3f}, biases "
      f"{fast.lr * fast.bias_lr_scale:.1f} (the head's × bias_lr_scale {fast.bias_lr_scale:.2f})")

# %%
plot_learning_rates(fast, steps_per_epoch)

# %% [markdown]
# ### The hardest images
# After one epoch many training images are already classified right with confidence, and a
# step on them teaches the network little. So after its first epoch, each epoch of the fast
# recipe trains only on the images with the highest loss: 80% of them in the second and third
# epochs, 60% from the fourth on. The loss of each image is the one its last training step
# computed anyway (from the step's own logits, without label smoothing), so choosing costs no
# extra pass. An image left out keeps its older loss, and comes back once enough of the trained
# images' losses fall below it. An epoch on fewer images takes fewer steps, but the learning
# rates fall as far over it as over an epoch on every image: each of its steps advances the
# schedule by more than one step.

# %% tags=["nbval-check-output"]
n_train = len(split_for(fast, train)[0])  # what fit trains on: all but the validation split
work = 0.0
for epoch in range(fast.epochs):
    fraction, size = fast.hardest_fraction_at(epoch), fast.crop_size_at(epoch) or 32
    steps = int(fraction * n_train) // fast.batch_size
    work += steps * fast.batch_size * size * size
    print(f"epoch {epoch + 1:2}: {fraction:.0%} of the images, {size}×{size}, {steps} steps")
print(f"pixels trained on over the run: {work / (fast.epochs * n_train * 32 * 32):.0%} of "
      f"{fast.epochs} epochs on every image, whole")

# %% [markdown]
# ### The training step, all together
# Everything above in one loop: the four parameter groups; for each parameter its momentum
# (the first step starts it at the gradient, as PyTorch's SGD does) and its Nesterov direction;
# for the filters the renormalisation and Newton–Schulz; small crops (resized windows) in the first
# epochs; the whitening bias frozen after its epochs; label smoothing in the loss; and each
# epoch after the first on its hardest images, chosen by the losses of the steps before.
#
# To compare with `fit` bit for bit, the check runs on the CPU in fp32 (`precision="fp32"`:
# no bf16 rounding), in the ordinary memory layout (`channels_last=False`: the same arithmetic
# in another order rounds differently), on 2,000 images of a narrow network (widths 16/32/32)
# for 4 epochs in batches of 100. `configure` keeps the recipe's schedule in proportion over
# the shorter run: the same share of epochs on crops, and in each epoch the share of
# hardest images of the matching point of the full run (the loop prints both). The batches
# come from `BatchIterator`, whose work was written out above.

# %%
def parameter_groups(net: nn.Sequential, cfg, steps_per_epoch: int) -> list[dict]:
    """The fast recipe's four groups: how each is trained, and over how many steps its rate
    falls to 0."""
    total = cfg.epochs * steps_per_epoch
    bias_lr = cfg.lr * cfg.bias_lr_scale
    bias_decay = cfg.weight_decay * cfg.lr / bias_lr  # bias_lr × bias_decay = lr × weight_decay
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    sgd = dict(muon=False, momentum=cfg.momentum)
    return [
        dict(params=[p for p in net.parameters() if p.ndim == 4 and p.requires_grad],  # filters
             muon=True, momentum=cfg.muon_momentum, lr=cfg.muon_lr, weight_decay=0.0,
             steps=total),
        dict(params=[m.bias for m in norms], **sgd, lr=bias_lr, weight_decay=bias_decay,
             steps=total),
        dict(params=[net[0].bias], **sgd, lr=bias_lr, weight_decay=bias_decay,  # whitening
             steps=cfg.whiten_bias_epochs * steps_per_epoch),
        dict(params=[net[-2].weight], **sgd, lr=cfg.lr, weight_decay=cfg.weight_decay,  # head
             steps=total),
    ]


@torch.no_grad()
def optimizer_step(groups: list[dict], momenta: dict, step: int) -> None:
    for group in groups:
        lr = group["lr"] * decay(step, group["steps"])
        for p in group["params"]:
            if p.grad is None:                                   # frozen: no gradient
                continue
            g = p.grad if group["muon"] else p.grad.add(p, alpha=group["weight_decay"])
            if id(p) not in momenta:
                momenta[id(p)] = g.clone()                       # the first step: m = g
            else:
                momenta[id(p)].mul_(group["momentum"]).add_(g)   # m ← μ·m + g
            update = g.add(momenta[id(p)], alpha=group["momentum"])  # Nesterov: g + μ·m
            if group["muon"]:
                p.mul_(len(p) ** 0.5 / p.norm())                 # renormalise: ‖W‖ = √out
                # newton_schulz above, as the library runs it (out × in·3·3)
                update = orthogonalize(update.reshape(len(p), -1)).view_as(p)
            p.add_(update, alpha=-lr)


# %%
check = configure("fast", seed=seed, device="cpu", precision="fp32", channels_last=False,
                  model_kwargs={"widths": (16, 32, 32)}, epochs=4, batch_size=100,
                  train_subset=2000, test_subset=200, eval_every=0,
                  tta_level=0,  # configure keeps the recipe's shares of crop and hardest epochs
                  val_fraction=0)  # fit trains on the same first 2,000 images as the loop
small = train.subset(check.train_subset)
seed_everything(check.seed)
fast_loop_net = fast_net(check.model_kwargs["widths"])
with torch.no_grad():
    fast_loop_net[0].weight.copy_(whitening_filters(normalize(small.images[:5000], check.mean,
                                                              check.std)))
    fast_loop_net[0].bias.zero_()
batches = BatchIterator(small, check.batch_size, mean=check.mean, std=check.std, shuffle=True,
                        flip=check.flip, translate=check.translate, drop_last=True,
                        seed=check.seed, brightness=check.brightness, contrast=check.contrast,
                        crop_window=check.crop_window)
steps_per_epoch = len(batches)                           # of an epoch on every image
groups = parameter_groups(fast_loop_net, check, steps_per_epoch)
momenta = {}
last_loss = torch.full((len(small),), float("inf"))      # each image's, when last trained on

fast_loop_net.train()
step = 0
for epoch in range(check.epochs):
    batches.epoch = epoch
    batches.crop_size = check.crop_size_at(epoch)                        # 24, 24, then None
    fraction = check.hardest_fraction_at(epoch)                          # 1, 0.8, 0.6, 0.6
    batches.keep = None
    if fraction < 1:                                                     # the hardest only
        batches.keep = torch.zeros(len(small), dtype=torch.bool)
        batches.keep[last_loss.topk(int(fraction * len(small))).indices] = True
    fast_loop_net[0].bias.requires_grad_(epoch < check.whiten_bias_epochs)  # then frozen
    m = len(batches)                                                     # this epoch's steps
    for i, (x, y) in enumerate(batches):
        for p in fast_loop_net.parameters():
            p.grad = None
        logits = fast_loop_net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=check.label_smoothing)
        loss.backward()
        # the schedule moves a whole epoch's worth over this epoch's m steps
        optimizer_step(groups, momenta, epoch * steps_per_epoch + i * steps_per_epoch // m)
        images = batches.order[i * check.batch_size:(i + 1) * check.batch_size]
        last_loss[images] = F.cross_entropy(logits.detach(), y, reduction="none")
        step += 1
    print(f"epoch {epoch + 1}: {fraction:.0%} of the images, {m} steps on "
          f"{x.shape[-1]}×{x.shape[-1]} images, last loss {loss.item():.3f}")

# %% [markdown]
# `fit` with the same configuration must end with exactly the same weights.

# %% tags=["nbval-check-output"]
fitted = fit(check, train, test, progress=False).model.state_dict()
print(f"{step} steps; {len(fitted)} tensors compared (weights, biases, BatchNorm statistics)")
print("fit and the hand-written fast loop give identical weights:",
      identical(fast_loop_net.state_dict(), fitted))

# %% [markdown]
# ### Every knob of the fast recipe
# A recipe is a `TrainConfig`: every knob of a run in one place, checked when it is built. Here
# is each of the fast recipe's, with what it does (the odd-looking learning rates are the
# published ones converted to this code's conventions: `cifar_lib/recipes.py` shows the
# arithmetic). The check at the end fails if a knob is added without a line here.

# %% tags=["nbval-check-output"]
import dataclasses

from IPython.display import Markdown

KNOBS = {
    "model": "the network: `airbench`, the one written out above",
    "model_kwargs": "its widths: channels of the three conv groups",
    "epochs": "passes over the training images (all but the validation split)",
    "batch_size": "images per optimiser step",
    "micro_batch": "None: each step computed whole (a number: that many images at a time, "
                   "gradients summed, for less memory at once)",
    "optimizer": "`muon`: Muon for the conv filters, Nesterov SGD for biases and head",
    "lr": "the head's peak SGD learning rate (the biases' is this × `bias_lr_scale`)",
    "momentum": "SGD's Nesterov momentum (biases, head)",
    "muon_lr": "the filters' peak Muon learning rate",
    "muon_momentum": "Muon's Nesterov momentum (filters)",
    "weight_decay": "the head shrinks by lr × this each step; the biases by the same amount",
    "bias_lr_scale": "BatchNorm and whitening biases learn this much faster than the head: "
                     "their published rate divided by the head's",
    "schedule": "`triangle`: the multiplier goes from `lr_start` up to 1 at `lr_peak_at` of "
                "the run, then down to `lr_end`",
    "lr_start": "1: the first step is the peak (no warm-up) ...",
    "lr_peak_at": "... at 0% of the run ...",
    "lr_end": "... falling linearly to 0 at the last step",
    "label_smoothing": "the share of each target spread over all ten classes",
    "lookahead": "a slowly averaged copy of the weights (airbench94 needs it; Muon does not)",
    "whiten_bias_epochs": "the whitening bias learns for this many epochs (its rate falling to "
                          "0 over them), then is frozen",
    "hardest_fraction": "the share of the images each epoch trains on, one per epoch (a "
                        "single number: every epoch the same; 1: every image), those with the "
                        "highest loss when last trained on ...",
    "hardest_from_epoch": "... from this epoch on, counting from 0",
    "flip": "`alternating`: every image mirrored in every other epoch",
    "translate": "random shifts of up to this many pixels, reflect-filled",
    "brightness": "a random shift of each image's normalised values, up to ± this",
    "contrast": "then a random factor for each image, 1 ± this",
    "crop_epochs": "the first epochs train on small crops of random windows ...",
    "crop_size": "... of this many pixels square",
    "crop_window": "None: windows cut out as they are; a number: each is a random window of at "
                   "least this share of the image's side, resized to `crop_size`",
    "mean": "per-channel mean of CIFAR-10's training images, subtracted ...",
    "std": "... then divided by its standard deviation",
    "tta_level": "test-time augmentation for the final evaluation: 2 is six views",
    "tta_fraction": "... spent only on this share of test images, the least confident",
    "precision": "`auto`: bf16 on GPUs from compute capability 8.0 and on CPUs with native "
                 "bf16, fp16 with a gradient scaler on older GPUs (such as the T4), fp32 "
                 "elsewhere",
    "channels_last": "`auto`: the memory layout fast convolution kernels want (not on MPS)",
    "seed": "the random seed, for everything",
    "device": "`auto`: a GPU if there is one, else the CPU",
    "val_fraction": "the share of training images held out as the validation split (5,000)",
    "train_subset": "use only the first N training images (None: all)",
    "test_subset": "... and test images",
    "eval_every": "evaluate on the test set every N epochs (for the curves)",
}


def shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


fields = [f.name for f in dataclasses.fields(fast)]
display(Markdown("| knob | fast | what it does |\n|---|---|---|\n" + "\n".join(
    f"| `{name}` | `{shown(getattr(fast, name))}` | {KNOBS[name]} |"
    for name in fields if name in KNOBS)))
missing = [name for name in fields if name not in KNOBS]
print("every knob of the fast recipe explained:", not missing, *missing)

# %% [markdown]
# ## How long will it take on this machine?
# Mostly a matter of hardware. Before the long run, `estimate_fit_seconds` builds the run
# exactly as `fit` will, times 3 training steps on each image size the run trains on (after one
# warm-up step that allocates memory and picks kernels; on a GPU the clock is read only once the
# GPU has finished), times one batch of evaluation, and multiplies out. Beside it, the shorter
# budgets with the accuracy each reached when measured (`cifar_lib.recipes.EXPECTED_ACCURACY`,
# checked against the benchmark records by the tests): `recipe = "short"` (a narrower
# airbench94 for 4 epochs) and `recipe = "tiny"` (narrower still, one epoch). If the answer is
# longer than you want to wait, change the parameters cell and run again: `recipe`, `epochs`,
# or `compare_original = False`.

# %%
from cifar_lib.speed import estimate_fit_seconds
from cifar_lib.recipes import EXPECTED_ACCURACY

config = configure(recipe, quick=quick, seed=seed, device=device, model=model, epochs=epochs,
                   batch_size=batch_size, lr=lr)
as_published = configure(recipe).to_dict()
changed = {k: v for k, v in config.to_dict().items() if v != as_published[k]}
print(f"the run below: recipe {recipe!r}, changed by this notebook's parameters: "
      f"{changed or 'nothing'}")


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def expected(name: str) -> str:
    accuracy, seeds, _ = EXPECTED_ACCURACY.get(name, (None, 0, None))
    if accuracy is None:
        return "not measured"
    return (f"about {accuracy:.1f}% (measured over {seeds} seed{'s' if seeds > 1 else ''}, "
            f"training on all 50,000 images)")


timing = dict(steps=1, warmup=0) if quick else dict(steps=3, warmup=1)  # quick: a rough guess
plans = {recipe: config}
if compare_original:
    plans["original, for comparison"] = configure("original", quick=quick, seed=seed, device=device)
wait = 0.0
for name, plan in plans.items():
    e = estimate_fit_seconds(plan, train, test, **timing)
    wait += e["total_seconds"]
    print(f"{name}: {e['total_steps']:,} training steps ≈ {duration(e['train_seconds'])}, "
          f"evaluation ({e['eval_passes']} × {e['eval_images']:,} images) ≈ "
          f"{duration(e['eval_seconds'])}: in all ≈ {duration(e['total_seconds'])} "
          f"({e['device']}, {e['precision']})")
print(f"expected wait for the training below: about {duration(wait)}; "
      f"{recipe} as published reaches {expected(recipe)}")
if config.val_fraction:
    print(f"this run holds out {config.val_fraction:.0%} of the training images for validation, "
          f"so expect a little less (the ablation below measures how much)")
print("That is a long wait on this machine. Shorter budgets:" if wait > 20 * 60 else
      "Shorter budgets:")
for name in ("short", "tiny"):
    if name != recipe:
        short = estimate_fit_seconds(configure(name, quick=quick, seed=seed, device=device),
                                     train, test, **timing)
        print(f'  recipe = "{name}": ≈ {duration(short["total_seconds"])} here, {expected(name)}')
print("  or fewer epochs (e.g. epochs = 5): proportionally less time, lower accuracy")

# %% [markdown]
# ## Train
# The progress bar shows loss and accuracy on the training batches; the curves below redraw
# after every epoch, against epochs and against seconds of training. Everything is saved to
# `run_dir`; after an interruption, `fit(..., resume=True)` continues from the last finished
# epoch. When `run_dir` already holds a finished run of exactly these settings (you ran this
# lesson before, from the same folder), it is loaded instead of trained again, and the curves
# are drawn from its history; `retrain = True` trains it anew.

# %%
from cifar_lib.train import load_finished

live = LiveTrainingCurves(crop_epochs=config.crop_epochs)
result = None if retrain else load_finished(config, run_dir)
if result is None:
    result = fit(config, train, test, run_dir=run_dir, callbacks=[live])
else:
    print(f"loaded the finished run in {run_dir} (the same settings): not trained again")
    for row in result.history:
        live(row)
metrics = result.metrics
print(f"test accuracy {metrics['test_acc']:.2%}"
      + (f", with test-time augmentation {metrics['test_acc_tta']:.2%}" if "test_acc_tta" in metrics else "")
      + f" — {metrics['train_seconds']:.0f} s of training at {metrics['images_per_second']:.0f} images/s"
      + f" ({metrics['device']}, {metrics['precision']})")
last = result.history[-1]
if "test_loss" in last:
    print(f"last epoch: training loss {last['train_loss']:.3f} (smoothed targets, augmented "
          f"images, the epoch's hardest {config.hardest_fraction_at(config.epochs - 1):.0%}; "
          f"never below {loss_floor:.3f}), test loss {last['test_loss']:.3f} (plain targets)")

# %% [markdown]
# Two things to read in the curves. The training loss stays well *above* the test loss: it is
# measured against the smoothed targets, whose own entropy (printed above) is a floor it can
# never go below, on augmented images and, from the second epoch on, on the epoch's hardest
# images only, while the test loss is plain cross-entropy on every test image. And where the
# crops end (the dotted line), the training accuracy jumps and each epoch takes longer:
# whole images are easier to classify than 24×24 crops, and have 1.8× the pixels to compute.
#
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

# %% tags=["nbval-check-output"]
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
# The original notebook: the same data, its `SimpleCNN`, Adam at 1e-3, batch 128, two epochs,
# no augmentation. Same `fit`, same library, only the recipe differs. The lower row of curves
# compares them by the clock.

# %%
original_metrics = None
if compare_original:
    original_config = configure("original", quick=quick, seed=seed, device=device)
    original = (None if retrain else load_finished(original_config, f"{run_dir}-original")) \
        or fit(original_config, train, test, run_dir=f"{run_dir}-original")
    original_metrics = original.metrics
    print(f"original recipe: test accuracy {original_metrics['test_acc']:.2%} "
          f"in {original_metrics['train_seconds']:.0f} s of training")
    display(plot_training_curves({recipe: result.history, "original": original.history},
                                 crop_epochs=config.crop_epochs))

# %% [markdown]
# ## What each trick buys: the ablation
# Each trick is in a recipe because it paid. An ablation measures how much: the recipe trained
# with every trick, then with one trick removed at a time (everything else unchanged), over
# several seeds, at the recipe's full budget (`python -m cifar_lib bench ablation`: hours on a
# CPU, so the course ships its record). Read the differences, not the absolute accuracy: a
# difference smaller than its error bar (the spread over seeds) is noise.

# %%
from cifar_lib import ablation
from cifar_lib.records import markdown_table

shown_recipe = "fast"
measured = ablation.read_record(shown_recipe)
print(f"the ablation of {shown_recipe!r}, seeds {measured['settings']['seeds']} "
      f"(to measure it again: python -m cifar_lib bench ablation --recipe {shown_recipe})")
summary = measured["summary"]
full = next(r for r in summary if r["variant"] == shown_recipe)  # the row with every trick
# A record whose runs saw the machine's speed change says its seconds do not compare.
timed = ablation.seconds_compare(measured)
if not timed:
    print("training times not shown: this record says they do not compare between variants")
columns = {"variant": "variant", "removed": "removed",
           "test accuracy %": lambda r: f"{r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f}",
           "vs every trick (points)":
               lambda r: f"{r['test_acc_mean'] - full['test_acc_mean']:+.2f}"}
if timed:
    columns["training seconds (median)"] = lambda r: f"{r['seconds_median']:.0f}"
    columns["time ÷ every trick's"] = \
        lambda r: f"{r['seconds_median'] / full['seconds_median']:.2f}"
display(Markdown(markdown_table(summary, columns)))
costs = sorted((r for r in summary if r is not full and r["variant"] != "original"),
               key=lambda r: r["test_acc_mean"])
print("costliest to remove first:", ", ".join(
    f"{r['variant']} ({r['test_acc_mean'] - full['test_acc_mean']:+.2f})" for r in costs))
noise = [r["variant"] for r in costs if abs(r["test_acc_mean"] - full["test_acc_mean"])
         < ablation.difference_error(r, full)]
print("within their error bars, nothing measurable at this budget:", ", ".join(noise) or "none")
plot_ablation_differences(summary, full=shown_recipe, full_label=shown_recipe, timed=timed)

# %% [markdown]
# Read each bar with its error bar: a difference inside it is noise at the record's number of
# seeds, so the rows listed above as within their error bars bought nothing this ablation can
# measure (a smaller effect may still be there). Tricks that regularise (flips, shifts, jitter)
# pay once a run is long enough for the network to start memorising its training images; ten
# epochs is short, so here they buy little.
#
# A trick can also be kept for the time it saves rather than the accuracy it adds. The early
# crops and the hardest images are such trades: whole images throughout, or every image
# in every epoch, score as high or higher with more work per run (the cell on the hardest images
# prints the share of that work `fast` does); they are how `fast` keeps its time down. Where the
# record's seconds compare, the table and a second panel show each variant's time; a record
# whose runs saw the machine's speed change leaves them out. "no
# TTA" trains exactly as the full recipe does: test-time augmentation costs only evaluation
# time. One row is a price, not a trick: "no validation split" trains on all 50,000 images
# instead of holding 5,000 out for choosing the temperature and thresholds (lesson 03), and
# shows what those images cost.
#
# With `rerun_ablation = True` the next cell measures a cheap ablation of `fast` on this
# machine (one seed, one epoch, a narrower network: minutes on a CPU, seconds on a GPU). One
# seed at one epoch is noisy: compare its ranking of the tricks with the table's.

# %%
if rerun_ablation:
    budget = ablation.QUICK if quick else dict(epochs=1, widths=(16, 32, 32))
    rows = ablation.run(train, test, recipe="fast", seeds=[seed], device=device,
                        progress=False, **budget)
    display(plot_ablation_differences(ablation.summarize(rows), full="fast", full_label="fast"))

# %% [markdown]
# ## Saving the run
# `fit` has already written the run folder: `checkpoint.pt` (the weights, the configuration that
# built the model, the class names and the normalisation), `metrics.json` and `history.json`.
# The results below are recorded as JSON too (in the notebook and in
# `run_dir/train_results.json`) so that scripts and parameter sweeps can read them back.

# %%
from pathlib import Path

print("the run folder holds:", ", ".join(sorted(p.name for p in Path(run_dir).iterdir())))
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
# 2. **Remove the whitening layer.** In the cell that calls `configure(recipe, ...)`, add
#    `model_kwargs={"widths": (64, 256, 256), "whiten": False}`: an ordinary, learnt 2×2
#    convolution takes the frozen whitening layer's place (the ablation's "no whitening"). How
#    much accuracy does the whitening buy after 10 epochs? After 2?
# 3. **Which trick is worth most at full size?** In the cell that calls `configure(recipe, ...)`,
#    add one of `label_smoothing=0.0`, `flip="random"`, `translate=0`, `tta_level=0`,
#    `crop_epochs=0` or `brightness=0, contrast=0`, and train the fast recipe. Which costs the
#    most accuracy at the full size and 10 epochs? Which saves time? Compare with the ablation
#    table above.
# 4. **Break the fast loop's agreement, then explain it.** In `optimizer_step`, delete the
#    renormalisation line `p.mul_(len(p) ** 0.5 / p.norm())` and run the training step and its
#    check again: it prints False. Put it back, and instead pass `steps=5` to `orthogonalize`
#    in `optimizer_step`. Why does the check fail again, although five iterations orthogonalise
#    *better*? *Hint:* the check compares with what `fit` does, not with what is best.
#
#    <details><summary>Answer</summary>
#
#    Both changes make the hand-written loop compute something other than `fit`'s `Muon`
#    (three iterations, renormalised weights), so the weights drift apart from the first step
#    on; the check says "not the same", never "worse". Whether five iterations would train
#    better is a question for a benchmark: `Muon(..., ns_steps=5)` in `cifar_lib.muon` and a
#    few seeds of the full recipe.
#    </details>
#
# 5. **Crops resized or cut out.** After the batch by hand, add a cell that draws the same
#    batch with the windows cut out (no `crop_window`: the other draws are the same) and shows
#    both, the resized windows above:
#
#    ```python
#    import matplotlib.pyplot as plt
#    from cifar_lib.plots.common import show
#    cut = BatchIterator(sample, 8, mean=fast.mean, std=fast.std, shuffle=True, flip=fast.flip,
#                        translate=fast.translate, seed=seed, brightness=fast.brightness,
#                        contrast=fast.contrast)
#    cut.epoch, cut.crop_size = 0, fast.crop_size_at(0)
#    fig, axes = plt.subplots(2, 8, figsize=(12, 3.2))
#    for row, batch in zip(axes, (library_x, next(iter(cut))[0])):
#        for ax, image in zip(row, batch):
#            ax.imshow(show(image, fast.mean, fast.std))
#            ax.axis("off")
#    ```
#
#    Which row shows more of each object? Then train with cut-out crops: right after the
#    `configure(recipe, ...)` call add `config = config.replace(crop_window=None)` (`configure`
#    itself reads None as "the recipe's own"). Same cost per step: what does it change in
#    accuracy, and how sure can one run make you? Compare with the ablation's "cut-out crops"
#    row.
#
# 6. **Why is the training loss so high?** After training, the last epoch's training loss is
#    far above its test loss. Compute the loss of a *perfect* prediction of the smoothed targets:
#    `F.cross_entropy(targets[:1].log(), y[:1], label_smoothing=0.2)`. *Hint:* the log of the
#    target probabilities is a set of logits whose softmax is exactly the target.
#
#    <details><summary>Answer</summary>
#
#    It is the entropy of the smoothed target, `loss_floor` above (about 0.87 nats): no network
#    can score lower on smoothed targets, however well it classifies. The test loss is measured
#    against the plain labels, where a confident right answer costs almost nothing, so it can
#    fall well below the training loss. The hardest images add to the gap: the last epochs'
#    training loss is over the images the network found hardest, not over all of them.
#    </details>
# 7. **Train on every image.** In the cell that calls `configure(recipe, ...)`, add
#    `hardest_fraction=1.0`: every epoch then trains on every image, as the first does. How
#    much longer does the run take, and how much accuracy does it buy? Compare with the
#    ablation's "every image" row, and with `hardest_fraction=1.0, epochs=7`: about the
#    recipe's own work (1 + 2 × 0.8 + 7 × 0.6 = 6.8 epochs' worth of images), spread over every
#    image. Which keeps more accuracy?
