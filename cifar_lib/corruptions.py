"""Common image corruptions at five severities, in the spirit of CIFAR-10-C, made on the fly.

Hendrycks & Dietterich (2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations") published CIFAR-10-C: the test set under 15 corruptions × 5 severities, as
files. Here the corruptions are computed from the test images when they are needed, so nothing
is downloaded and the recipe is in view:

    >>> from cifar_lib.corruptions import CORRUPTIONS, corrupt
    >>> dark = corrupt(test.images, "brightness", severity=3, seed=0)   # uint8 N×3×32×32

Each corruption's five severity parameters are in ``SEVERITIES``, one readable table; the values
follow CIFAR-10-C's (the ``make_cifar_c.py`` script of the paper's code) where they made sense
for one direction of change, and every table gets monotonically stronger, so severity 5 always
changes an image more than severity 1. The images are not bit-identical to CIFAR-10-C's files
(different resampling and JPEG code, and our own random draws), so accuracies are comparable
in spirit, not to the decimal.

Random draws (noise) come from a local ``torch.Generator`` seeded with ``seed`` on the CPU, so
one seed gives the same corrupted images on the CPU and on a GPU, and the global RNG is never
touched. JPEG is a CPU codec (libjpeg); its images go through the CPU and come back. Everything
else runs on the images' own device, with ``torchvision.transforms.v2.functional``.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

# Severity 1..5 → the parameter of each corruption (images in 0..1 where a value is an intensity).
SEVERITIES: dict[str, tuple] = {
    # std of additive Gaussian noise, as a fraction of the 0..255 range: CIFAR-10-C's values.
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    # photons per unit intensity (Poisson noise: fewer photons, more noise): CIFAR-10-C's.
    "shot_noise": (500, 250, 100, 75, 50),
    # fraction of values set to 0 or 255 (salt & pepper, each channel apart): CIFAR-10-C's.
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    # Gaussian blur sigma in pixels: CIFAR-10-C's.
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    # (disk radius, sigma of the 3×3 anti-alias blur after it) in pixels: CIFAR-10-C's. Radius
    # < 1 covers only the centre pixel, so severities 1–3 are the small Gaussian alone.
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    # JPEG quality (100 best): CIFAR-10-C's.
    "jpeg": (80, 65, 58, 50, 40),
    # contrast factor (1 = unchanged, 0 = one flat grey): CIFAR-10-C's.
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # brightness factor: DARKENING, by 1/3 … 5/3 exposure stops (2^(-k/3)). CIFAR-10-C
    # brightens (adds .05–.3 to HSV value); an under-exposed photo (dusk, indoors, no flash) is
    # the common real case, and darkening also loses levels in uint8, as a dark JPEG does.
    "brightness": (0.794, 0.630, 0.500, 0.397, 0.315),
    # side length after downsampling, as a fraction of the image's: CIFAR-10-C's
    # (32 px → 30, 28, 27, 24, 20 px), then back up with nearest neighbour: visible blocks.
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # saturation factor: DESATURATION, faded colour (old prints, mixed light) down to greyscale.
    # CIFAR-10-C desaturates at severities 1–2 (0.3, 0.1) but oversaturates at 3–5, which does
    # not grow monotonically; one direction here.
    "saturate": (0.7, 0.5, 0.3, 0.15, 0.0),
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)
# Images processed at a time: a chunk's float copies stay small (2,000 × 3×32×32 × 4 B = 25 MB).
CHUNK = 2000


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def _uint8(x: torch.Tensor) -> torch.Tensor:
    """Floats in 0..1 → uint8 0..255, rounded (not truncated: that would darken everything)."""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def _gaussian_noise(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    return _uint8(_float(x) + sigma * noise)


def _shot_noise(x: torch.Tensor, photons: float, gen: torch.Generator) -> torch.Tensor:
    # torch.poisson draws with a generator only on its own device: draw on the CPU, like the rest
    counts = torch.poisson(_float(x.cpu()) * photons, generator=gen)
    return _uint8(counts / photons).to(x.device)


def _impulse_noise(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    hit = torch.rand(x.shape, generator=gen).to(x.device) < amount
    salt = torch.rand(x.shape, generator=gen).to(x.device) < 0.5
    return torch.where(hit, salt.to(torch.uint8) * 255, x)


def _kernel_size(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1  # ±3σ holds 99.7% of the weight


def _gaussian_blur(x: torch.Tensor, sigma: float, gen=None) -> torch.Tensor:
    k = _kernel_size(sigma)
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


def _defocus_blur(x: torch.Tensor, params: tuple[float, float], gen=None) -> torch.Tensor:
    """An out-of-focus lens spreads a point into a disk: convolve with a flat disk of the given
    radius, then a 3×3 Gaussian that softens its jagged (aliased) edge."""
    radius, alias_sigma = params
    r = math.floor(radius)
    coords = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = (coords[:, None] ** 2 + coords[None, :] ** 2 <= radius ** 2).float()
    disk = (disk / disk.sum()).to(x.device).expand(3, 1, 2 * r + 1, 2 * r + 1)
    out = F.conv2d(F.pad(_float(x), (r,) * 4, mode="reflect"), disk, groups=3) if r else _float(x)
    return TF.gaussian_blur(_uint8(out), [3, 3], [alias_sigma, alias_sigma])


def _jpeg(x: torch.Tensor, quality: int, gen=None) -> torch.Tensor:
    with warnings.catch_warnings():
        # torchvision 0.29 announces that its JPEG codec will move to TorchCodec; it still
        # works, and one warning per chunk would bury the benchmark's output
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        return TF.jpeg(x.cpu(), quality).to(x.device)


def _contrast(x: torch.Tensor, factor: float, gen=None) -> torch.Tensor:
    return TF.adjust_contrast(x, factor)  # blends each image with its mean grey level


def _brightness(x: torch.Tensor, factor: float, gen=None) -> torch.Tensor:
    return TF.adjust_brightness(x, factor)  # multiplies: black stays black, as with exposure


def _pixelate(x: torch.Tensor, fraction: float, gen=None) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = TF.resize(x, [int(h * fraction), int(w * fraction)],
                      interpolation=TF.InterpolationMode.BILINEAR, antialias=True)  # ≈ area mean
    # NEAREST_EXACT samples at pixel centres; plain NEAREST shifts the content by up to a pixel
    # at non-integer scales (30 → 32 px), which changes an image more than the blocks do
    return TF.resize(small, [h, w], interpolation=TF.InterpolationMode.NEAREST_EXACT)


def _saturate(x: torch.Tensor, factor: float, gen=None) -> torch.Tensor:
    return TF.adjust_saturation(x, factor)  # blends each pixel with its own grey value


_FUNCTIONS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur, "jpeg": _jpeg, "contrast": _contrast,
    "brightness": _brightness, "pixelate": _pixelate, "saturate": _saturate,
}
assert tuple(_FUNCTIONS) == CORRUPTIONS


def _check(images, name: str, severity: int) -> None:
    if name not in SEVERITIES:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer 1, 2, 3, 4 or 5, got {severity!r}")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        what = (f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if isinstance(images, torch.Tensor) else type(images).__name__)
        raise ValueError(f"images must be a uint8 tensor N×3×H×W (RGB, 0..255, as "
                         f"CifarSplit.images), got a {what}")


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` (uint8 N×3×H×W, any device) under corruption ``name`` at ``severity`` 1..5:
    a new uint8 tensor of the same shape on the same device. The same seed gives the same
    images (on every device); the input is not modified. Names: ``CORRUPTIONS``.
    """
    _check(images, name, severity)
    fn, param = _FUNCTIONS[name], SEVERITIES[name][severity - 1]
    gen = torch.Generator().manual_seed(seed)  # a local CPU generator: see the module docstring
    if len(images) == 0:
        return images.clone()
    return torch.cat([fn(images[i:i + CHUNK], param, gen) for i in range(0, len(images), CHUNK)])
