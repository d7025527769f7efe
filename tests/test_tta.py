"""Test-time augmentation is pinned to what ``tta_logits`` documents, not only its shape:
level 1 averages the image and its left-right mirror; level 2 weights that pair 1/2 and the
mirrored pairs of the image shifted one pixel up-left and down-right (reflect-filled) 1/4 each.
The references are computed here independently, and shown to tell the documented views from
near misses (the wrong flip axis, a two-pixel shift, equal weights)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cifar_lib.batches import normalize
from cifar_lib.inference import predict_logits, selective_tta_logits, tta_logits

H = W = 8


@pytest.fixture(scope="module")
def model():
    """A small conv net with fixed random weights: no symmetry a wrong view could hide behind."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                        nn.Linear(4 * H * W, 10))
    return net.double().eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(5, 3, H, W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _reflect(i: int, n: int) -> int:
    """Index i of a length-n axis, mirrored at the edges without repeating them (reflect)."""
    return -i if i < 0 else 2 * (n - 1) - i if i > n - 1 else i


def _replicate(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


def shift(x: torch.Tensor, dy: int, dx: int, fill=_reflect) -> torch.Tensor:
    """Output pixel (i, j) = input (i + dy, j + dx), reflected at the border: the image content
    moves up by dy and left by dx. Index arithmetic, independent of F.pad."""
    h, w = x.shape[-2:]
    rows = torch.tensor([fill(i + dy, h) for i in range(h)])
    cols = torch.tensor([fill(j + dx, w) for j in range(w)])
    return x[..., rows, :][..., cols]


def mirror_pair(model, v, axis=-1):
    return (model(v) + model(v.flip(axis))) / 2


def level2_reference(model, x, step=1, weights=(0.5, 0.25, 0.25), fill=_reflect):
    # itself, moved up-left, moved down-right
    views = [x, shift(x, step, step, fill), shift(x, -step, -step, fill)]
    return sum(w * mirror_pair(model, v) for w, v in zip(weights, views))


def close(a, b):
    return torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_shift_reference_is_a_reflect_filled_translation():
    img = torch.arange(16.).view(1, 1, 4, 4)
    # moved up-left by one: row/column 1 comes first, the last row/column reflects to 2
    assert shift(img, 1, 1)[0, 0].tolist() == [[5, 6, 7, 6], [9, 10, 11, 10],
                                               [13, 14, 15, 14], [9, 10, 11, 10]]
    assert shift(img, -1, -1)[0, 0].tolist() == [[5, 4, 5, 6], [1, 0, 1, 2],
                                                 [5, 4, 5, 6], [9, 8, 9, 10]]


@torch.no_grad()
def test_level_0_is_the_model_itself(model, x):
    assert torch.equal(tta_logits(model, x, 0), model(x))


@torch.no_grad()
def test_level_1_averages_the_image_and_its_left_right_mirror(model, x):
    assert close(tta_logits(model, x, 1), (model(x) + model(x.flip(-1))) / 2)


@torch.no_grad()
def test_level_2_weights_the_plain_pair_half_and_each_shifted_pair_a_quarter(model, x):
    assert close(tta_logits(model, x, 2), level2_reference(model, x))


@torch.no_grad()
def test_level_1_reference_would_catch_a_flip_on_the_wrong_axis(model, x):
    right, wrong = mirror_pair(model, x, -1), mirror_pair(model, x, -2)
    assert (right - wrong).abs().max() > 1e-3
    assert not close(tta_logits(model, x, 1), wrong)


@torch.no_grad()
def test_level_2_reference_would_catch_a_wrong_shift_fill_or_weights(model, x):
    one_pixel = level2_reference(model, x)
    assert (one_pixel - level2_reference(model, x, step=2)).abs().max() > 1e-3
    assert (one_pixel - level2_reference(model, x, fill=_replicate)).abs().max() > 1e-4
    assert (one_pixel - level2_reference(model, x, weights=(1 / 3,) * 3)).abs().max() > 1e-4
    # and the shifted views matter at all
    assert (one_pixel - mirror_pair(model, x)).abs().max() > 1e-4


def test_unknown_level_is_a_value_error(model, x):
    with pytest.raises(ValueError, match="tta level must be 0, 1 or 2"):
        tta_logits(model, x, 3)


@pytest.mark.parametrize("level", [1, 2])
def test_predict_logits_normalises_then_applies_tta_in_batches(model, level):
    net = copy.deepcopy(model).float()  # predict_logits feeds float32
    images = torch.randint(0, 256, (7, 3, H, W), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    got = predict_logits(net, images, mean, std, tta_level=level, batch_size=3)
    with torch.no_grad():
        expected = tta_logits(net, normalize(images, mean, std), level)
        unnormalised = tta_logits(net, images.float() / 255, level)
    assert got.dtype == torch.float32 and got.shape == (7, 10)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, unnormalised, atol=1e-3)  # the normalisation is applied


@pytest.mark.parametrize("fraction, k", [(0.4, 2), (0.2, 1), (1.0, 5)])
def test_selective_tta_augments_only_the_least_confident_images(model, x, fraction, k):
    with torch.no_grad():
        plain, full = model(x), tta_logits(model, x, 2)
        got = selective_tta_logits(model, x, 2, fraction)
    unsure = plain.softmax(1).amax(1).argsort()[:k]  # the k lowest top probabilities
    sure = torch.ones(len(x), dtype=torch.bool)
    sure[unsure] = False
    assert close(got[unsure], full[unsure]) and close(got[sure], plain[sure])
    assert not close(plain[unsure], full[unsure])  # the two kinds of rows do differ


def test_predict_logits_with_a_tta_fraction_selects_per_batch(model):
    net = copy.deepcopy(model).float()
    images = torch.randint(0, 256, (8, 3, H, W), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    got = predict_logits(net, images, mean, std, tta_level=2, batch_size=4, tta_fraction=0.5)
    with torch.no_grad():
        x = normalize(images, mean, std)
        expected = torch.cat([selective_tta_logits(net, x[:4], 2, 0.5),
                              selective_tta_logits(net, x[4:], 2, 0.5)])
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    everything = predict_logits(net, images, mean, std, tta_level=2, batch_size=4)
    assert not torch.allclose(got, everything, atol=1e-4)


@pytest.mark.parametrize("level, fraction", [(0, 1.0), (1, 1.0), (2, 1.0), (2, 0.5)])
def test_with_plain_gives_both_logits_from_one_pass_bit_for_bit(model, level, fraction):
    net = copy.deepcopy(model).float()
    calls = []
    net.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    images = torch.randint(0, 256, (8, 3, H, W), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(4))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    kwargs = dict(tta_level=level, batch_size=4, tta_fraction=fraction)
    logits, plain = predict_logits(net, images, mean, std, with_plain=True, **kwargs)
    both = sum(calls)
    calls.clear()
    alone = predict_logits(net, images, mean, std, **kwargs)
    assert both == sum(calls)  # images through the network: no more than for TTA alone
    assert torch.equal(logits, alone)  # the same arithmetic, not merely close
    assert torch.equal(plain, predict_logits(net, images, mean, std, batch_size=4))
