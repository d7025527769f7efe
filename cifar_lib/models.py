"""The networks, built by name from a small registry.

- ``simple_cnn``: the original notebook's CNN, exactly (620,362 parameters).
- ``airbench``: a small VGG-like net in the style of Keller Jordan's airbench94: a frozen
  patch-whitening first layer, three conv-pool-BatchNorm-activation blocks, a scaled linear head.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function


class SimpleCNN(nn.Module):
    """The original notebook's CNN: three 3×3 conv (3→32→64→128) + ReLU + 2×2 max-pool, then 2048→256→10.

    Input float N×3×32×32 → logits N×10.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))  # 32×16×16
        x = self.pool(torch.relu(self.conv2(x)))  # 64×8×8
        x = self.pool(torch.relu(self.conv3(x)))  # 128×4×4
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Whitening(nn.Conv2d):
    """2×2 conv whose filters whiten image patches: initialised from data, then frozen.

    For the 12-dimensional 2×2×3 patches, the filters are the covariance eigenvectors scaled by
    1/sqrt(eigenvalue), so the outputs are decorrelated with unit variance; each filter also
    appears negated (2×12 = 24 channels) so the following activation loses no information.
    Only the bias trains, and only for the first few epochs (see ``fit``).

    ``stride`` 1 whitens every 2×2 patch (N×3×32×32 → N×24×31×31); 2 whitens the
    non-overlapping ones (→ N×24×16×16), so every later layer works on a quarter of the pixels.
    """

    def __init__(self, eps: float = 5e-4, stride: int = 1):
        super().__init__(3, 24, kernel_size=2, stride=stride, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def init_from(self, images: torch.Tensor) -> None:
        """Fit the filters to normalised float images N×3×H×W (a few thousand suffice)."""
        cov = patch_covariance(images)
        eigvals, eigvecs = torch.linalg.eigh(cov.double())
        filters = (eigvecs.T / torch.sqrt(eigvals + self.eps)[:, None]).float().view(12, 3, 2, 2)
        self.weight.copy_(torch.cat([filters, -filters]))
        self.bias.zero_()

    @torch.no_grad()
    def covariances(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(before, after): the 12×12 covariance of the 2×2 patches of normalised float images
        N×3×H×W, and of the layer's first 12 output channels (the filters without their negated
        copies) on the same images. After ``init_from`` on similar images, ``after`` is close to
        the identity (each diagonal entry is eigenvalue / (eigenvalue + eps))."""
        out = nn.functional.conv2d(images.float(), self.weight[:12])  # N×12×H'×W', no bias
        flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
        flat = flat - flat.mean(0)
        return patch_covariance(images), flat.T @ flat / len(flat)


def patch_covariance(images: torch.Tensor) -> torch.Tensor:
    """12×12 covariance of the 2×2 patches (3 channels × 2 × 2 = 12 numbers, in (c, kh, kw)
    order) of float images N×3×H×W, over every patch position of every image."""
    patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)      # N×3×H'×W'×2×2
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)    # P×12, (c, kh, kw) order
    patches = patches - patches.mean(0)
    return patches.T @ patches / len(patches)


# airbench's GELU, and the SiLU of the CIFAR-10 speedrun record.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "silu": nn.SiLU}


def make_activation(name: str) -> nn.Module:
    """A new activation module by name (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def tap_weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weight gradient O×C×3×3 of a 3×3 convolution (padding 1, stride 1) with input
    x N×C×H×W and output gradient grad N×O×H×W, as nine matrix products, one per filter tap:
    tap (i, j) sums grad · (x shifted by i - 1, j - 1) over every image and position."""
    n, c, h, w = x.shape
    padded = x.new_zeros(n, h + 2, w + 2, c)
    padded[:, 1:-1, 1:-1] = x.permute(0, 2, 3, 1)
    g = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1]).t()  # O × (N·H·W)
    out = x.new_empty(grad.shape[1], 3, 3, c)
    for i in range(3):
        for j in range(3):
            out[:, i, j] = g @ padded[:, i:i + h, j:j + w].reshape(-1, c)
    return out.permute(0, 3, 1, 2)


class _TapGradConv(torch.autograd.Function):
    """``F.conv2d(x, weight, padding=1)``, its weight gradient from ``tap_weight_grad``."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=1)
        if ctx.needs_input_grad[1]:
            grad_w = tap_weight_grad(grad, x)
        return grad_x, grad_w


def dense_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` for x N×C×H×W and weight O×C×3×3 as one matrix
    product: x flattened to N×(H·W·C) times the convolution written out as an
    (H·W·C)×(H·W·O) matrix, whose block (input position, output position) is the filter tap
    that joins them, or zero. On a map this small every output position sees (nearly) every
    input, so the product wastes little work, and one large product, forward and backward,
    runs far faster on a CPU than the convolution library's routines do on such maps.
    Autograd differentiates it as it stands."""
    n, c, h, w = x.shape
    o = weight.shape[0]
    rows = torch.arange(h, device=x.device).repeat_interleave(w)  # row of each position
    cols = torch.arange(w, device=x.device).repeat(h)
    di = rows[:, None] - rows[None, :] + 1  # the tap joining input p to output q
    dj = cols[:, None] - cols[None, :] + 1
    tap = torch.where((di >= 0) & (di <= 2) & (dj >= 0) & (dj <= 2), di * 3 + dj, 9)
    taps = torch.cat([weight.permute(1, 2, 3, 0).reshape(c, 9, o), weight.new_zeros(c, 1, o)], 1)
    matrix = taps[:, tap].permute(1, 0, 2, 3).reshape(h * w * c, h * w * o)  # (p, c) × (q, o)
    out = x.permute(0, 2, 3, 1).reshape(n, h * w * c) @ matrix
    return out.reshape(n, h, w, o).permute(0, 3, 1, 2)


class Conv3x3(nn.Conv2d):
    """3×3 convolution, padding 1, no bias: N×C×H×W → N×O×H×W, as ``nn.Conv2d`` computes it.

    Only training on a CPU differs, on the smallest maps, where the CPU's convolution library
    is slowest for the work it does. In float32, on maps at most ``DENSE_MAX_SIZE`` wide, the
    whole convolution is one matrix product (``dense_conv3x3``). In bfloat16, on maps at most
    ``TAP_GRAD_MAX_SIZE`` wide, the library computes the weight gradient several times slower
    than the forward pass, so there it is nine matrix products instead (``tap_weight_grad``).
    In airbench's network on 32×32 images the last convolution's map is 3×3; on 24×24 ones
    the last three convolutions' maps are 5×5, 5×5 and 2×2. Elsewhere (GPUs, larger maps,
    inference) it is ``nn.Conv2d``'s own path.
    """

    # The largest maps where each path pays for a whole training step (benchmarks/HISTORY.md).
    DENSE_MAX_SIZE = 2  # float32
    TAP_GRAD_MAX_SIZE = 5  # bfloat16

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad:
            size = max(x.shape[-2:])
            if not torch.is_autocast_enabled("cpu"):
                if size <= self.DENSE_MAX_SIZE:
                    with record_function("dense_conv3x3"):  # a convolution to the profiler
                        return dense_conv3x3(x, self.weight)
            elif (torch.get_autocast_dtype("cpu") == torch.bfloat16
                  and size <= self.TAP_GRAD_MAX_SIZE):
                with torch.autocast("cpu", enabled=False):  # cast once, as autocast would
                    return _TapGradConv.apply(x.to(torch.bfloat16),
                                              self.weight.to(torch.bfloat16))
        return super().forward(x)


class ConvGroup(nn.Sequential):
    """conv3×3 → max-pool 2 → BN → act → conv3×3 → BN → act (spatial size halves)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float, activation: str = "gelu"):
        def bn():
            norm = nn.BatchNorm2d(c_out, momentum=bn_momentum, eps=1e-12)
            norm.weight.requires_grad_(False)  # airbench: a learnable scale only slows things down
            return norm
        super().__init__(Conv3x3(c_in, c_out), nn.MaxPool2d(2), bn(),
                         make_activation(activation), Conv3x3(c_out, c_out), bn(),
                         make_activation(activation))
        for conv in (self[0], self[4]):  # identity-like start: gradients flow from step one
            nn.init.dirac_(conv.weight.data[: conv.in_channels])


class Mul(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AirbenchNet(nn.Sequential):
    """Whitening → 3 ConvGroups (widths) → global max-pool → linear head × scale.

    Input float N×3×32×32 → logits N×10. ``widths`` (64, 256, 256), GELU and stride 1 are
    airbench94's. ``whiten_stride=2`` whitens non-overlapping 2×2 patches (a quarter of the
    work in every later layer, for a lower accuracy); ``activation`` is "gelu" or "silu".
    ``whiten=False`` puts an ordinary, learnt 2×2 conv (3→24) where the frozen whitening layer
    was: the ablation that shows what the whitening buys.
    """

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10,
                 bn_momentum: float = 0.4, head_scale: float = 1 / 9, whiten: bool = True,
                 whiten_stride: int = 1, activation: str = "gelu"):
        if whiten_stride not in (1, 2):
            raise ValueError(f"whiten_stride must be 1 (every 2×2 patch) or 2 (non-overlapping "
                             f"patches), got {whiten_stride!r}")
        w1, w2, w3 = widths
        first = (Whitening(stride=whiten_stride) if whiten
                 else nn.Conv2d(3, 24, kernel_size=2, stride=whiten_stride, padding=0))
        super().__init__(first, make_activation(activation),
                         ConvGroup(24, w1, bn_momentum, activation),
                         ConvGroup(w1, w2, bn_momentum, activation),
                         ConvGroup(w2, w3, bn_momentum, activation),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(w3, num_classes, bias=False), Mul(head_scale))

    @property
    def whitening(self) -> Whitening | None:
        """The frozen whitening layer (None when built with ``whiten=False``)."""
        return self[0] if isinstance(self[0], Whitening) else None


MODELS: dict[str, Callable[..., nn.Module]] = {"simple_cnn": SimpleCNN, "airbench": AirbenchNet}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def build_model(name: str, **kwargs) -> nn.Module:
    """A new model by its registered name (``MODELS``: "airbench", "simple_cnn"); ``kwargs`` go
    to its constructor. It maps normalised float N×3×32×32 images to logits N×10. An
    airbench model's whitening layer still has to be fitted to the data
    (``model.whitening.init_from(images)``), as ``fit`` does."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
