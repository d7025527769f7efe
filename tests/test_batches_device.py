"""The batch iterator moves an epoch's order and augmentation draws to the device once per epoch
(not per batch) and keeps the normalisation constants there; the batches themselves are what
the documented draws make them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cifar_lib.batches import BatchIterator, channel_stats, crop, jitter
from cifar_lib.data import CifarSplit

BATCH = 8
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _split(n: int) -> CifarSplit:
    g = torch.Generator().manual_seed(n)
    # labels = image number, so every yielded label says which image was taken
    return CifarSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(n))


def _iterator(n_batches: int, **kw) -> BatchIterator:
    args = dict(mean=MEAN, std=STD, device="cpu", shuffle=True, flip="alternating",
                translate=2, drop_last=True, seed=0)
    return BatchIterator(_split(n_batches * BATCH), BATCH, **{**args, **kw})


def _count_to_calls(monkeypatch, it: BatchIterator) -> int:
    calls = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        calls.append(args or kwargs)
        return real_to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    try:
        batches = list(it)
    finally:
        monkeypatch.undo()
    assert len(batches) == len(it)
    return len(calls)


def test_copies_to_the_device_are_few_and_per_epoch_not_per_batch(monkeypatch):
    small, large = _iterator(10), _iterator(20)
    assert (len(small), len(large)) == (10, 20)
    n_small, n_large = _count_to_calls(monkeypatch, small), _count_to_calls(monkeypatch, large)
    assert n_large <= 4, f"{n_large} .to() calls for one epoch of 20 batches"
    assert n_small == n_large


def test_normalisation_constants_live_on_the_device_and_are_made_once():
    it = _iterator(3)
    mean, std = it.mean, it.std
    for t, values in ((mean, MEAN), (std, STD)):
        assert isinstance(t, torch.Tensor) and t.device == it.device
        assert t.shape == (1, 3, 1, 1) and t.dtype == torch.float32
        assert torch.allclose(t.flatten(), torch.tensor(values))
    list(it)
    list(it)
    assert it.mean is mean and it.std is std
    # normalize() receives them per batch: taking them as they are must not copy them
    assert channel_stats(it.mean, it.device).data_ptr() == it.mean.data_ptr()


def _reference_epoch(it: BatchIterator, epoch: int):
    """Batches of ``epoch`` rebuilt from the documented draws: the epoch's order, its flip mask,
    shifts from the third per-epoch generator; normalise, mirror, then crop the reflect-padded
    image at (pad + dy, pad + dx)."""
    it.epoch = epoch
    order = it.epoch_order()
    flips = it._flip_mask(order)
    shifts = torch.randint(-it.pad, it.pad + 1, (len(it.labels), 2), generator=it._generator(2))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    batches = []
    for start in range(0, len(order) - BATCH + 1, BATCH):
        idx = order[start:start + BATCH]
        images = []
        for k, i in enumerate(idx.tolist()):
            img = (it.images[i:i + 1].float() / 255 - mean) / std
            if flips[start + k]:
                img = img.flip(-1)
            dy, dx = (it.pad + shifts[start + k]).tolist()
            padded = F.pad(img, (it.pad,) * 4, mode="reflect")
            images.append(padded[..., dy:dy + 32, dx:dx + 32])
        batches.append((torch.cat(images), it.labels[idx]))
    return batches


@pytest.mark.parametrize("epoch", [0, 1])
def test_batches_are_the_documented_draws_applied(epoch):
    it = _iterator(4)
    expected = _reference_epoch(it, epoch)
    it.epoch = epoch
    got = list(it)
    assert len(got) == len(expected) == 4
    for (x, y), (ex, ey) in zip(got, expected):
        assert torch.equal(y, ey)
        assert torch.allclose(x, ex, rtol=0, atol=1e-6)


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    it = _iterator(4)
    ids = torch.arange(len(it.labels))
    it.epoch = 0
    even = it._flip_mask(ids)
    it.epoch = 1
    odd = it._flip_mask(ids)
    assert torch.equal(even ^ odd, torch.ones_like(even))
    assert 0 < even.sum() < len(even)


def test_same_epoch_repeats_and_another_epoch_differs():
    it = _iterator(4)
    it.epoch = 0
    first = list(it)
    it.epoch = 0
    again = list(it)
    second_epoch = list(it)  # iterating advanced the epoch to 1
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], second_epoch[0][1])
    assert not torch.equal(torch.cat([x for x, _ in first]),
                           torch.cat([x for x, _ in second_epoch]))


def test_crop_takes_each_images_own_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    corners = torch.tensor([[0, 0], [2, 1]])
    got = crop(x, corners, 4, 3)
    assert got.shape == (2, 1, 4, 3)
    assert torch.equal(got[0], x[0, :, 0:4, 0:3]) and torch.equal(got[1], x[1, :, 2:6, 1:4])


def test_crop_epochs_yield_the_documented_windows_of_the_full_batches():
    """With ``crop_size`` set, each batch is the full-size batch cut at the corners drawn from the
    fourth per-epoch generator; unset, it is the full-size batch again."""
    it = _iterator(4)
    full = _reference_epoch(it, 1)
    corners = torch.randint(0, 32 - 24 + 1, (len(it.labels), 2), generator=it._generator(3))
    it.epoch, it.crop_size = 1, 24
    got = list(it)
    for k, ((x, y), (fx, fy)) in enumerate(zip(got, full)):
        assert x.shape == (BATCH, 3, 24, 24) and torch.equal(y, fy)
        expected = crop(fx, corners[k * BATCH:(k + 1) * BATCH], 24, 24)
        assert torch.allclose(x, expected, rtol=0, atol=1e-6)
    assert not torch.equal(corners[:, 0], corners[0, 0].expand(len(corners)))  # not one window
    it.epoch, it.crop_size = 1, None
    assert all(torch.equal(x, fx) for (x, _), (fx, _) in zip(it, full))
    it.epoch, it.crop_size = 1, 32  # a window as large as the image is the image
    assert all(torch.equal(x, fx) for (x, _), (fx, _) in zip(it, full))


def test_jitter_shifts_then_scales_each_image_by_its_own_draw():
    x = torch.randn(3, 3, 4, 4)
    shift, scale = torch.tensor([0.0, 0.5, -0.2]), torch.tensor([1.0, 1.0, 0.8])
    got = jitter(x, shift, scale)
    assert got.shape == x.shape
    assert torch.equal(got[0], x[0])  # no shift, scale 1: untouched
    assert torch.allclose(got[1], x[1] + 0.5) and torch.allclose(got[2], (x[2] - 0.2) * 0.8)
    # a scale below 1 lowers the contrast: the spread around the image's mean shrinks
    assert torch.allclose(got[2].std(), 0.8 * x[2].std())


def test_colour_jitter_yields_the_documented_draws_and_is_off_by_default():
    """With brightness b and contrast c, each batch is the plain batch shifted by b·u and scaled
    by 1 + c·v, with (u, v) uniform in [-1, 1) from the fifth per-epoch generator."""
    plain = _iterator(4)
    assert plain.jitter_draws() is None  # off unless asked for
    full = _reference_epoch(plain, 1)
    it = _iterator(4, brightness=0.14, contrast=0.13)
    it.epoch = 1
    u = torch.rand(len(it.labels), 2, generator=it._generator(4)) * 2 - 1
    shift, scale = it.jitter_draws()
    assert shift.abs().max() <= 0.14 and (scale - 1).abs().max() <= 0.13
    assert torch.allclose(shift, 0.14 * u[:, 0]) and torch.allclose(scale, 1 + 0.13 * u[:, 1])
    got = list(it)
    for k, ((x, y), (fx, fy)) in enumerate(zip(got, full)):
        sel = slice(k * BATCH, (k + 1) * BATCH)
        assert torch.equal(y, fy)
        expected = (fx + shift[sel].view(-1, 1, 1, 1)) * scale[sel].view(-1, 1, 1, 1)
        assert torch.allclose(x, expected, rtol=0, atol=1e-5)
    it.epoch = 1
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(it, got))  # same epoch, same draws
    assert not torch.equal(it.jitter_draws()[0], shift)  # iterating moved on to epoch 2


def test_colour_jitter_shards_like_the_other_draws():
    """Rank r of a 2-process run gets the draws of positions r, r + 2, ... of the epoch."""
    whole = _iterator(4, brightness=0.1, contrast=0.1, translate=0, flip=None)
    shift, scale = whole.jitter_draws()
    for rank in range(2):
        part = _iterator(4, brightness=0.1, contrast=0.1, translate=0, flip=None,
                         shard=(rank, 2))
        s, c = part.jitter_draws()
        assert torch.equal(s, shift[rank::2]) and torch.equal(c, scale[rank::2])
