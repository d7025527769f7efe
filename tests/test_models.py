import pytest
import torch
import torch.nn.functional as F

from cifar_lib.device import DeviceError, autocast_dtype, select_device
from cifar_lib.batches import CIFAR10_MEAN_STD, normalize
from cifar_lib import models
from cifar_lib.models import (MODELS, Conv3x3, Whitening, UnknownModelError, build_model,
                              count_parameters, dense_conv3x3, tap_weight_grad)


def test_simple_cnn_is_the_seed_network_exactly():
    model = build_model("simple_cnn")
    assert count_parameters(model) == 620_362
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == \
        [(3, 32, (3, 3)), (32, 64, (3, 3)), (64, 128, (3, 3))]
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_maps_images_to_ten_logits(name):
    assert build_model(name)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_strided_whitening_quarters_every_later_layer_and_silu_replaces_every_gelu():
    x = torch.randn(2, 3, 32, 32)
    plain = build_model("airbench", widths=(8, 16, 32))
    strided = build_model("airbench", widths=(8, 16, 32), whiten_stride=2, activation="silu")
    first_group = lambda m: torch.nn.Sequential(*list(m)[:3])  # noqa: E731
    assert first_group(plain)(x).shape == (2, 8, 15, 15)
    assert first_group(strided)(x).shape == (2, 8, 8, 8)
    assert strided(x).shape == (2, 10)
    kinds = lambda m: {type(layer) for layer in m.modules()}  # noqa: E731
    assert torch.nn.GELU in kinds(plain) and torch.nn.SiLU not in kinds(plain)
    assert torch.nn.SiLU in kinds(strided) and torch.nn.GELU not in kinds(strided)
    # the same count of activations: one after the whitening, two per group
    count = lambda m, t: sum(isinstance(layer, t) for layer in m.modules())  # noqa: E731
    assert count(strided, torch.nn.SiLU) == count(plain, torch.nn.GELU) == 7


@pytest.mark.parametrize("kwargs, message", [({"activation": "swish"}, "swish.*gelu, silu"),
                                             ({"whiten_stride": 3}, "whiten_stride must be 1")])
def test_unknown_activation_or_stride_is_refused_with_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model("airbench", **kwargs)


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(UnknownModelError, match="resnet.*airbench, simple_cnn"):
        build_model("resnet")


@pytest.mark.real_data
def test_whitening_layer_whitens_real_patches(cifar10):
    train, test = cifar10
    # eps regularises the tiniest eigenvalue (airbench's 5e-4 halves its variance on purpose);
    # with a negligible eps the output covariance must be the identity.
    layer = Whitening(eps=1e-7)
    layer.init_from(normalize(train.images[:5000], *CIFAR10_MEAN_STD))
    with torch.no_grad():  # held-out images: whitening must generalise, not just fit
        out = layer(normalize(test.images[:2000], *CIFAR10_MEAN_STD))
    cov = torch.cov(out[:, :12].permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(cov, torch.eye(12), atol=0.15), cov.diag()
    assert torch.allclose(out[:, 12:], -out[:, :12])  # negated copies
    assert not build_model("airbench").whitening.weight.requires_grad


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no CUDA GPU.*'auto' or 'cpu'"):
        select_device("cuda")
    assert select_device("auto").type in ("cpu", "mps")


def test_unknown_device_and_precision_are_refused():
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype(torch.device("cpu"), "fp8")
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "gpu") is None  # the original recipe stays fp32 on CPUs
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16


def test_tap_weight_grad_is_the_convolution_s_weight_gradient():
    torch.manual_seed(0)
    for size in (2, 3, 5, 7):
        x = torch.randn(4, 6, size, size, dtype=torch.float64)
        grad = torch.randn(4, 5, size, size, dtype=torch.float64)
        expected = torch.nn.grad.conv2d_weight(x, (5, 6, 3, 3), grad, padding=1)
        assert torch.allclose(tap_weight_grad(grad, x), expected, atol=1e-10)


def _conv3x3_grads(conv, x, enabled):
    x = x.clone().requires_grad_()
    conv.weight.grad = None
    with torch.autocast("cpu", torch.bfloat16, enabled=enabled):
        y = conv(x)
    y.float().square().sum().backward()
    return y, x.grad, conv.weight.grad


@pytest.mark.parametrize("size", [2, 5, 7])
def test_conv3x3_under_bf16_matches_autocast_conv2d_and_takes_the_tap_gradient_on_small_maps(
        size, monkeypatch):
    torch.manual_seed(0)
    conv = Conv3x3(8, 16)
    x = torch.randn(3, 8, size, size).contiguous(memory_format=torch.channels_last)
    plain = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    plain.weight = conv.weight
    calls = []
    monkeypatch.setattr(models, "tap_weight_grad",
                        lambda *a: calls.append(1) or tap_weight_grad(*a))
    monkeypatch.setattr(models, "dense_conv3x3", lambda *a: pytest.fail("dense product in bf16"))
    y, gx, gw = _conv3x3_grads(conv, x, True)
    y0, gx0, gw0 = _conv3x3_grads(plain, x, True)
    assert y.dtype == torch.bfloat16 and torch.equal(y, y0)  # the forward pass is autocast's own
    # bf16 sums round differently in each kernel, and the kernels differ between CPUs with and
    # without native bf16: both gradients agree to a share of their largest value
    assert torch.allclose(gx, gx0, rtol=2e-2, atol=2e-2 * gx0.abs().max().item())
    assert torch.allclose(gw, gw0, rtol=2e-2, atol=2e-2 * gw0.abs().max().item())
    assert len(calls) == (size <= Conv3x3.TAP_GRAD_MAX_SIZE)


def test_dense_conv3x3_is_the_convolution_with_its_gradients():
    torch.manual_seed(0)
    for h, w in ((1, 1), (2, 2), (3, 3), (2, 3), (4, 4), (5, 2)):
        x = torch.randn(3, 4, h, w, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
        expected = F.conv2d(x, weight, padding=1)
        got = dense_conv3x3(x, weight)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-12)
        grad = torch.randn_like(expected)
        for a, b in zip(torch.autograd.grad(got, (x, weight), grad),
                        torch.autograd.grad(expected, (x, weight), grad)):
            assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_conv3x3_in_float32_takes_the_dense_product_on_small_maps_only(size, monkeypatch):
    torch.manual_seed(0)
    conv = Conv3x3(8, 16)
    plain = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    plain.weight = conv.weight
    monkeypatch.setattr(models, "tap_weight_grad", lambda *a: pytest.fail("tap gradient in fp32"))
    calls = []
    monkeypatch.setattr(models, "dense_conv3x3",
                        lambda *a: calls.append(1) or dense_conv3x3(*a))
    x = torch.randn(3, 8, size, size)
    dense = size <= Conv3x3.DENSE_MAX_SIZE
    for a, b in zip(_conv3x3_grads(conv, x, False), _conv3x3_grads(plain, x, False)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        assert dense or torch.equal(a, b)  # larger maps: nn.Conv2d's own path
    assert len(calls) == dense
    with torch.no_grad():  # inference is nn.Conv2d's own path on every map
        assert torch.equal(conv(x), plain(x))
    assert len(calls) == dense
    assert set(conv.state_dict()) == set(plain.state_dict()) == {"weight"}
