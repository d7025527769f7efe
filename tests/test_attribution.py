"""Grad-CAM (cifar_lib.attribution) on tiny CPU models, and its figure."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cifar_lib.attribution import cam_for_run, cam_titles, default_layer, grad_cam
from cifar_lib.batches import normalize
from cifar_lib.checkpoint import LoadedModel
from cifar_lib.models import AirbenchNet, SimpleCNN
from cifar_lib.plots import plot_grad_cam

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return SimpleCNN(num_classes=3).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


class ColourDetector(nn.Module):
    """Hand-built 2-class net: channel 0 of ``features`` fires on red pixels, channel 1 on
    green ones; class k's logit is the spatial mean of channel k (a global-average head)."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])[:, :, None, None])
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU())

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def red_left_green_right(n: int = 2, size: int = 16) -> torch.Tensor:
    """float n×3×size×size: grey, a red square in the left half, a green one in the right."""
    x = torch.full((n, 3, size, size), 0.5)
    q = size // 4
    x[:, :, q:3 * q, 1:q + 3] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    x[:, :, q:3 * q, -q - 3:-1] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
    return x


def left_share(maps: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's mass in the left half: N."""
    w = maps.shape[-1] // 2
    return maps[..., :w].sum((1, 2)) / maps.sum((1, 2))


def test_maps_have_the_image_size_and_lie_in_0_1(cnn, images):
    maps = grad_cam(cnn, images)
    assert maps.shape == (4, 32, 32)
    assert torch.isfinite(maps).all()
    assert maps.min() >= 0
    assert torch.allclose(maps.amax((1, 2)), torch.ones(4))  # each scaled to its own max


def test_maps_change_with_the_target_class(cnn, images):
    per_class = [grad_cam(cnn, images, target=k) for k in range(3)]
    assert not torch.allclose(per_class[0], per_class[1], atol=1e-3)
    assert not torch.allclose(per_class[1], per_class[2], atol=1e-3)
    predicted = cnn(images).argmax(1)
    assert torch.allclose(grad_cam(cnn, images), grad_cam(cnn, images, target=predicted))


def test_map_sits_on_the_evidence_for_each_class():
    # Grad-CAM finds evidence through the channels that carry it: class 0 (red) must light up
    # the red square on the left, class 1 (green) the green one on the right, and the maps
    # must follow the squares when the image is mirrored. (A head that merely *reads* the
    # left half of a uniform feature map cannot be localised this way: Grad-CAM averages the
    # gradients over positions, so such a map spreads over both halves.)
    model, x = ColourDetector(), red_left_green_right()
    layer = model.features
    assert (left_share(grad_cam(model, x, 0, layer)) > 0.95).all()
    assert (left_share(grad_cam(model, x, 1, layer)) < 0.05).all()
    mirrored = x.flip(-1)
    assert (left_share(grad_cam(model, mirrored, 0, layer)) < 0.05).all()
    assert (left_share(grad_cam(model, mirrored, 1, layer)) > 0.95).all()


def test_all_zero_map_stays_zero_not_nan():
    model = ColourDetector()
    grey = torch.full((2, 3, 8, 8), 0.5)  # neither red nor green: every activation is 0
    maps = grad_cam(model, grey, 0, model.features)
    assert torch.equal(maps, torch.zeros(2, 8, 8))


def test_model_mode_grads_and_hooks_are_left_as_they_were(cnn, images):
    cnn.train()
    cnn.conv1.eval()  # a mixed state must come back as it was, not as all-train
    cnn.fc2.weight.grad = torch.full_like(cnn.fc2.weight, 7.0)
    try:
        grad_cam(cnn, images)
        assert cnn.training and cnn.conv3.training and not cnn.conv1.training
        assert torch.equal(cnn.fc2.weight.grad, torch.full_like(cnn.fc2.weight, 7.0))
        assert all(p.grad is None for n, p in cnn.named_parameters() if n != "fc2.weight")
        assert all(not m._forward_hooks and not m._backward_hooks for m in cnn.modules())
    finally:
        cnn.eval()
        cnn.fc2.weight.grad = None


def test_hooks_and_mode_are_restored_after_an_error(cnn, images):
    cnn.train()
    try:
        with pytest.raises(ValueError, match="0..2"):
            grad_cam(cnn, images, target=5)
        assert cnn.training
        assert all(not m._forward_hooks for m in cnn.modules())
    finally:
        cnn.eval()


def test_works_inside_no_grad_and_inference_mode(cnn, images):
    expected = grad_cam(cnn, images)
    with torch.no_grad():
        assert torch.allclose(grad_cam(cnn, images), expected)
    with torch.inference_mode():
        x = images.clone()  # an inference tensor
        assert torch.allclose(grad_cam(cnn, x), expected)


def test_works_when_the_model_is_frozen(cnn, images):
    expected = grad_cam(cnn, images, target=1)
    cnn.requires_grad_(False)
    try:
        assert torch.allclose(grad_cam(cnn, images, target=1), expected)
    finally:
        cnn.requires_grad_(True)


def _layer_output_shape(model, layer, size=32):
    shapes = []
    handle = layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    handle.remove()
    return shapes[0]


def test_default_layer_is_the_last_spatial_stage():
    cnn = SimpleCNN()
    assert default_layer(cnn) is cnn.conv3
    assert _layer_output_shape(cnn, cnn.conv3) == (128, 8, 8)
    air = AirbenchNet(widths=(8, 16, 16)).eval()
    assert default_layer(air) is air[4]
    assert _layer_output_shape(air, air[4]) == (16, 3, 3)
    assert grad_cam(air, torch.randn(2, 3, 32, 32)).shape == (2, 32, 32)


def test_default_layer_unwraps_and_refuses_unknown_models():
    cnn = SimpleCNN()
    wrapper = nn.Module()
    wrapper.module = cnn  # what DistributedDataParallel looks like
    assert default_layer(wrapper) is cnn.conv3
    with pytest.raises(ValueError, match="layer="):
        default_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))


def test_bad_inputs_raise_clear_errors(cnn, images):
    with pytest.raises(ValueError, match="normalize"):
        grad_cam(cnn, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one per image"):
        grad_cam(cnn, images, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="convolutional"):
        grad_cam(cnn, images, layer=cnn.fc1)
    with pytest.raises(ValueError, match="did not run"):
        grad_cam(cnn, images, layer=nn.Conv2d(3, 3, 1))


def test_cam_for_run_normalises_with_the_runs_statistics(cnn):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    run = LoadedModel(cnn, ("a", "b", "c"), mean, std)
    uint8 = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    maps, predicted, probs = cam_for_run(run, uint8)
    x = normalize(uint8, mean, std)
    assert torch.allclose(maps, grad_cam(cnn, x))
    assert torch.equal(predicted, cnn(x).argmax(1))
    assert torch.allclose(probs, cnn(x).softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        cam_for_run(run, x)


def test_cam_titles_and_figure():
    probs = torch.tensor([[0.9, 0.1], [0.38, 0.62]])
    titles = cam_titles(("cat", "dog"), probs.argmax(1), probs, labels=torch.tensor([0, 0]))
    assert titles == ["cat 90%", "cat→dog 62%"]
    uint8 = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    fig = plot_grad_cam(uint8, torch.rand(3, 32, 32), ["a", "b", "c"], ncols=2)
    assert isinstance(fig, Figure)
    # each image alone (3), then each image under its heat map (3 × 2)
    assert sum(len(ax.images) for ax in fig.axes) == 9
    with pytest.raises(ValueError, match="one map and one title"):
        plot_grad_cam(uint8, torch.rand(2, 32, 32), ["a", "b", "c"])
