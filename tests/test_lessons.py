"""What 01_train shows: each figure of the fast recipe's ideas, the numbers behind it, the time
estimate before a long run, and the hand-written training loop that must reproduce ``fit``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from cifar_lib import plots
from cifar_lib.batches import BatchIterator, flip_some, normalize, translate
from cifar_lib.speed import clock as timing
from cifar_lib.speed import steps as throughput
from cifar_lib.data import CLASSES, CifarSplit, load_cifar10
from cifar_lib.inference import tta_logits, tta_views
from cifar_lib.models import Whitening, build_model, patch_covariance
from cifar_lib.muon import NS_COEFFICIENTS, orthogonalize
from cifar_lib.recipes import configure
from cifar_lib.train import (fit, lr_multiplier, lr_schedule, seed_everything,
                             smoothed_targets)

FAST = configure("fast")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _images(n=64, seed=0) -> torch.Tensor:
    """uint8 N×3×32×32 with correlated neighbours and colours, like photos (blurred noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 8, 8, generator=g) + 0.3 * torch.rand(n, 3, 8, 8, generator=g)
    fine = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    fine = fine + 0.05 * torch.rand(n, 3, 32, 32, generator=g)
    return (255 * fine / fine.max()).to(torch.uint8)


def _split(n=16) -> CifarSplit:
    return CifarSplit(_images(n), torch.arange(n) % 10, CLASSES)


def _n_images(fig: Figure) -> int:
    return sum(len(ax.images) for ax in fig.axes)


# ----------------------------------------------------------------------------- learning rate


def test_lr_schedule_is_lr_multiplier_at_every_step_and_plotted_times_lr():
    total = 10 * 48
    schedule = lr_schedule(FAST, total)
    peak = int(FAST.lr_peak_at * total)
    assert len(schedule) == total
    for step in (0, peak, total - 1):
        assert schedule[step] == lr_multiplier(FAST, step, total)
    assert schedule[0] == pytest.approx(FAST.lr_start) and schedule[peak] == 1.0
    assert max(schedule) == 1.0
    assert lr_schedule(configure("original"), 5) == [1.0] * 5


# ----------------------------------------------------------------------------- label smoothing


def test_smoothed_targets_sum_to_one_and_are_what_cross_entropy_uses():
    y = torch.tensor([3, 0, 9])
    t = smoothed_targets(y, 10, 0.2)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t[0, 3].item() == pytest.approx(1 - 0.2 + 0.02)
    assert t[0, 0].item() == pytest.approx(0.02)
    assert torch.equal(smoothed_targets(y, 10, 0.0), F.one_hot(y, 10).float())
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    by_hand = -(t * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(by_hand, F.cross_entropy(logits, y, label_smoothing=0.2))


def test_label_smoothing_figure_shows_the_targets_and_a_finite_best_margin():
    fig = plots.plot_label_smoothing(0.2, classes=CLASSES, true_class=3)
    assert len(fig.axes) == 2
    targets, losses = fig.axes
    hard, soft = targets.containers
    assert [b.get_height() for b in hard] == [0.0] * 3 + [1.0] + [0.0] * 6
    heights = np.array([b.get_height() for b in soft])
    assert heights.sum() == pytest.approx(1) and heights[3] == pytest.approx(0.82)
    none, smooth = losses.lines[:2]
    margin, loss = smooth.get_xdata(), smooth.get_ydata()
    assert margin[np.argmin(loss)] == pytest.approx(math.log(0.82 / 0.02), abs=0.03)
    assert np.all(np.diff(none.get_ydata()) < 0)  # without smoothing: ever lower


# ----------------------------------------------------------------------------- whitening


def test_whitened_patches_have_identity_covariance():
    images = normalize(_images(64), FAST.mean, FAST.std)
    layer = Whitening(eps=1e-7)
    layer.init_from(images)
    before, after = layer.covariances(images)
    patches = F.unfold(images, 2).transpose(1, 2).reshape(-1, 12)  # (c, kh, kw) order
    assert torch.allclose(before, torch.cov(patches.T, correction=0), atol=1e-5)
    assert torch.allclose(patch_covariance(images), before)
    assert torch.allclose(after, torch.eye(12), atol=1e-3)
    out = layer(images)[:, :12] - layer.bias[:12, None, None]  # the layer itself, no bias
    assert torch.allclose(torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1), correction=0),
                          after, atol=1e-4)
    # airbench's eps damps the faintest directions: diagonal λ / (λ + eps) ≤ 1, rest still ≈ 0
    default = Whitening()
    default.init_from(images)
    _, damped = default.covariances(images)
    lam = torch.linalg.eigvalsh(before.double()).float()
    assert torch.allclose(damped.diag(), lam / (lam + default.eps), atol=1e-3)
    assert torch.allclose(damped - torch.diag(damped.diag()), torch.zeros(12, 12), atol=1e-3)


# ----------------------------------------------------------------------------- Muon


def test_the_lessons_newton_schulz_by_hand_is_orthogonalize():
    a, b, c = NS_COEFFICIENTS
    g = torch.randn(64, 216, generator=torch.Generator().manual_seed(0))
    g[:, :8] *= 20
    x = g / g.norm()
    for _ in range(3):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    assert torch.allclose(x, orthogonalize(g), atol=1e-5)
    s = torch.linalg.svdvals(x)  # spread from 26× to within [0.6, 1.2], as the lesson says
    assert s.min() > 0.6 and s.max() < 1.25


# ----------------------------------------------------------------------------- flips and shifts


@pytest.mark.parametrize("epoch", [0, 1])
def test_epoch_draws_are_what_the_batches_apply(epoch):
    split = _split(12)
    it = BatchIterator(split, 4, mean=FAST.mean, std=FAST.std, shuffle=True, flip="alternating",
                       translate=2, seed=3)
    it.epoch = epoch
    order, flips, shifts = it.epoch_draws()
    got = list(it)
    assert it.epoch == epoch + 1
    x = normalize(split.images[order], FAST.mean, FAST.std)
    expected = translate(flip_some(x, flips), shifts, 2)
    assert torch.equal(torch.cat([b for b, _ in got]), expected)
    assert torch.equal(torch.cat([y for _, y in got]), split.labels[order])
    assert shifts.abs().max() <= 2
    plain = BatchIterator(split, 4)
    assert plain.epoch_draws()[1:] == (None, None)


def test_augmented_batch_figure_titles_each_image_with_its_draws():
    split = _split(6)
    fig = plots.plot_augmented_batch(split, FAST, n=6, epochs=2)
    assert _n_images(fig) == 3 * 6
    it = BatchIterator(split, 6, mean=FAST.mean, std=FAST.std, shuffle=False,
                       flip=FAST.flip, translate=FAST.translate, seed=FAST.seed)
    titles = [ax.get_title() for ax in fig.axes]
    for epoch in (0, 1):
        it.epoch = epoch
        _, flips, shifts = it.epoch_draws()
        row = titles[6 * (epoch + 1): 6 * (epoch + 2)]
        assert [t.startswith("flip") for t in row] == flips.tolist()
        assert all(f"({dy:+d}, {dx:+d})" in t for t, (dy, dx) in zip(row, shifts.tolist()))
    first = [t.startswith("flip") for t in titles[6:12]]
    second = [t.startswith("flip") for t in titles[12:18]]
    assert all(a != b for a, b in zip(first, second))  # alternating: each image once in two


# ----------------------------------------------------------------------------- TTA


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 32 * 32, 10)).double().eval()


@pytest.mark.parametrize("level, n", [(0, 1), (1, 2), (2, 6)])
def test_tta_views_weighted_are_tta_logits(net, level, n):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    views = tta_views(x, level)
    assert len(views) == n
    assert sum(w for _, w, _ in views) == pytest.approx(1)
    with torch.no_grad():
        by_hand = sum(w * net(v) for _, w, v in views)
        assert torch.allclose(by_hand, tta_logits(net, x, level), rtol=1e-12, atol=1e-12)
    names = [name for name, _, _ in views]
    if level:
        assert names[:2] == ["image", "mirror"]
        assert torch.equal(views[1][2], x.flip(-1))
    if level == 2:  # moved one pixel down-right (content at (i, j) came from (i - 1, j - 1))
        assert torch.equal(views[2][2][..., 1:, 1:], x[..., :-1, :-1])
        assert torch.equal(views[4][2][..., :-1, :-1], x[..., 1:, 1:])
        assert torch.equal(views[3][2], views[2][2].flip(-1))
    with pytest.raises(ValueError, match="0, 1 or 2"):
        tta_views(x, 3)


def test_tta_figure_shows_six_views_the_second_the_mirror(net):
    image = _images(1)[0]
    fig = plots.plot_tta_views(image, FAST.mean, FAST.std, level=2)
    assert _n_images(fig) == 6
    arrays = [ax.images[0].get_array() for ax in fig.axes]
    assert np.allclose(arrays[1], arrays[0][:, ::-1])
    model = build_model("simple_cnn").eval()
    fig = plots.plot_tta_views(image, FAST.mean, FAST.std, level=2, model=model, label=3,
                               classes=CLASSES)
    assert all("p(cat)" in ax.get_title() for ax in fig.axes) and "p(cat)" in fig.get_suptitle()


# ----------------------------------------------------------------------------- time estimate


def test_evaluation_passes_count_fits_evaluations():
    assert throughput.evaluation_passes(configure("airbench94")) == 10 + 6  # all six TTA views
    # the fast recipe's plain pass over all test images, then five more views for 30% of them
    assert throughput.evaluation_passes(FAST) == 10 + 1 + 5 * 0.3
    assert throughput.evaluation_passes(configure("original")) == 2
    assert throughput.evaluation_passes(configure("original", eval_every=0)) == 1
    assert throughput.evaluation_passes(configure("original", epochs=5, eval_every=2)) == 3
    assert throughput.evaluation_passes(FAST.replace(tta_fraction=0.25)) == 10 + 1 + 5 * 0.25


def test_estimate_extrapolates_timed_steps_with_the_shared_timer(synthetic_root, monkeypatch):
    train, test = load_cifar10(synthetic_root)  # 200 training and 40 test images
    reads = []

    def clock():  # every read one second later: each timed stretch takes exactly 1 s
        reads.append(1)
        return float(len(reads))

    monkeypatch.setattr(timing, "_now", clock)
    # airbench94 (whitening, lookahead, full TTA) at a tiny width: every part of a real run
    cfg = configure("airbench94", device="cpu", batch_size=32, epochs=2, test_subset=20,
                    model_kwargs={"widths": (8, 8, 8)}, precision="fp32")
    e = throughput.estimate_fit_seconds(cfg, train, test, steps=4, warmup=1)
    assert len(reads) == 4  # two clock readings for the training steps, two for evaluation
    # fit trains on the 180 images its validation split (a tenth) leaves: 5 steps an epoch
    assert e["steps_per_epoch"] == 180 // 32 and e["total_steps"] == 2 * 5
    assert e["seconds_per_step"] == pytest.approx(1 / 4)
    assert e["train_seconds"] == pytest.approx(10 / 4)
    assert e["eval_passes"] == 2 + 6 and e["eval_images"] == 20
    assert e["eval_seconds"] == pytest.approx(8 * 20 * (1 / 20))  # one timed batch of 20 images
    assert e["seconds_per_epoch"] == pytest.approx(5 / 4 + 1)
    assert e["total_seconds"] == pytest.approx(e["train_seconds"] + e["eval_seconds"])
    assert e["device"] == "cpu" and e["precision"] == "fp32" and e["batch_size"] == 32


def test_estimate_counts_crop_epochs_at_their_own_step_time(synthetic_root, monkeypatch):
    train, test = load_cifar10(synthetic_root)
    sizes = []

    def fake_measure(t, steps, warmup):  # a step on 20×20 crops takes 1 s, on whole images 2 s
        sizes.append(t.batches.crop_size)
        return {"seconds_per_step": 1.0 if t.batches.crop_size == 20 else 2.0}
    monkeypatch.setattr(throughput, "measure", fake_measure)
    cfg = configure("fast", device="cpu", batch_size=32, epochs=3, crop_epochs=2, crop_size=20,
                    test_subset=20, model_kwargs={"widths": (8, 8, 8)}, precision="fp32",
                    hardest_fraction=1.0, val_fraction=0)  # every image, every epoch: 6 steps
    e = throughput.estimate_fit_seconds(cfg, train, test, steps=1, warmup=0)
    assert sizes == [None, 20]
    assert e["train_seconds"] == pytest.approx(6 * (2 * 1.0 + 1 * 2.0))  # 6 steps an epoch
    assert e["seconds_per_step"] == 2.0


def test_estimate_times_each_crop_size_of_a_schedule_once(synthetic_root, monkeypatch):
    train, test = load_cifar10(synthetic_root)
    sizes = []

    def fake_measure(t, steps, warmup):  # a step costs its images' area in units of 16×16
        sizes.append(t.batches.crop_size)
        return {"seconds_per_step": ((t.batches.crop_size or 32) / 16) ** 2}
    monkeypatch.setattr(throughput, "measure", fake_measure)
    cfg = configure("fast", device="cpu", batch_size=32, epochs=4, crop_epochs=3,
                    crop_size=(16, 24, 16), test_subset=20, model_kwargs={"widths": (8, 8, 8)},
                    precision="fp32", hardest_fraction=1.0, val_fraction=0)
    e = throughput.estimate_fit_seconds(cfg, train, test, steps=1, warmup=0)
    assert sizes == [None, 16, 24]
    assert e["train_seconds"] == pytest.approx(6 * (1 + 2.25 + 1 + 4))  # 6 steps an epoch


def test_estimate_counts_only_the_steps_of_epochs_on_their_hardest_images(synthetic_root,
                                                                           monkeypatch):
    train, test = load_cifar10(synthetic_root)  # 200 training images, all trained on below

    def fake_measure(t, steps, warmup):  # a step on 24×24 windows takes 1 s, on whole images 2 s
        return {"seconds_per_step": 1.0 if t.batches.crop_size == 24 else 2.0}
    monkeypatch.setattr(throughput, "measure", fake_measure)
    cfg = configure("fast", device="cpu", batch_size=32, epochs=3, crop_epochs=2,
                    hardest_fraction=(0.5, 0.25), hardest_from_epoch=1, val_fraction=0,
                    test_subset=20, model_kwargs={"widths": (8, 8, 8)}, precision="fp32")
    e = throughput.estimate_fit_seconds(cfg, train, test, steps=1, warmup=0)
    # 200 // 32 steps, then 100 // 32 (the hardest half, still on windows), then 50 // 32
    assert e["steps_per_epoch"] == 6 and e["total_steps"] == 6 + 3 + 1
    assert e["train_seconds"] == pytest.approx(6 * 1.0 + 3 * 1.0 + 1 * 2.0)


# ----------------------------------------------------------------------------- the loop by hand


def test_the_lessons_hand_written_loop_is_fit_bit_for_bit(synthetic_root):
    train, test = load_cifar10(synthetic_root)
    cfg = configure("original", device="cpu", epochs=1, batch_size=32, train_subset=128,
                    eval_every=0, val_fraction=0)  # as in 01: fit trains on the same 128 images
    seed_everything(cfg.seed)
    net = build_model(cfg.model)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    batches = BatchIterator(train.subset(cfg.train_subset), cfg.batch_size, mean=cfg.mean,
                            std=cfg.std, shuffle=True, seed=cfg.seed, drop_last=True)
    net.train()
    for x, y in batches:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted = fit(cfg, train, test, progress=False).model.state_dict()
    mine = net.state_dict()
    assert mine.keys() == fitted.keys()
    assert all(torch.equal(mine[k], fitted[k]) for k in mine)
