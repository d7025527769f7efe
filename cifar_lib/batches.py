"""Batches straight from in-memory tensors: normalise and augment whole batches at once.

No DataLoader, no per-image Python: a batch is an index into the uint8 tensor, converted,
normalised, flipped and translated as one tensor on the model's device. This is what makes
training on a CPU (and even more on a GPU) fast enough to be a lesson rather than a wait.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from .data import CifarSplit

# The original notebook normalised with 0.5/0.5; the fast recipe uses the real channel statistics.
HALF_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def channel_stats(values, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-channel constants (mean or std, 3 numbers) as a float32 1×3×1×1 tensor on ``device``."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 N×3×H×W → float32 N×3×H×W, scaled to [0, 1] then standardised per channel.

    ``mean``/``std``: 3 numbers, or ``channel_stats`` tensors already on the images' device
    (what ``BatchIterator`` passes, so no constant is copied to the GPU per batch).
    """
    if images.dtype != torch.uint8:  # float images would be divided by 255 a second time
        raise ValueError(f"expected uint8 images (0–255), got {images.dtype}: pass "
                         f"(images * 255).round().to(torch.uint8) for floats in [0, 1]")
    mean_t, std_t = channel_stats(mean, images.device), channel_stats(std, images.device)
    return (images.float().div_(255) - mean_t) / std_t


def flip_some(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of N×C×H×W ``x`` where the bool N-vector ``mask`` is set."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def crop(x: torch.Tensor, corners: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The height×width window of each image of N×C×H×W ``x`` whose top-left pixel is at
    (row, column) in ``corners`` (N×2 ints): N×C×height×width."""
    n, c, _, w = x.shape
    # Two 1-D gathers (rows, then columns) are far cheaper than one 4-D advanced index.
    rows = torch.arange(height, device=x.device).view(1, 1, height, 1) + corners[:, 0].view(n, 1, 1, 1)
    x = x.gather(2, rows.expand(n, c, height, w))
    cols = torch.arange(width, device=x.device).view(1, 1, 1, width) + corners[:, 1].view(n, 1, 1, 1)
    return x.gather(3, cols.expand(n, c, height, width))


def resize_window(x: torch.Tensor, draws: torch.Tensor, low: float, size: int) -> torch.Tensor:
    """Each image of N×C×H×H ``x`` cut to a square window and resized (bilinear) to size×size:
    N×C×size×size. ``draws`` (N×3, uniform in [0, 1)) place each window: its side a fraction of
    H uniform in [``low``, 1], then its column and its row within the room left."""
    n, c = x.shape[:2]
    side = low + (1 - low) * draws[:, 0]
    # affine_grid's units: the image spans [-1, 1], a window of side s centred at t spans t ± s.
    theta = x.new_zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, 0, 2] = (draws[:, 1] * 2 - 1) * (1 - side)
    theta[:, 1, 2] = (draws[:, 2] * 2 - 1) * (1 - side)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def translate(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by (dy, dx) in ``shifts`` (N×2 ints in [-pad, pad]), filling by reflection.

    Equivalent to a random crop of size H×W from the reflect-padded image, done as one gather.
    """
    h, w = x.shape[-2:]
    return crop(F.pad(x, (pad,) * 4, mode="reflect"), pad + shifts, h, w)


def jitter(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Brightness and contrast of normalised N×C×H×W ``x``: image i becomes
    (x_i + shift_i) · scale_i (``shift``, ``scale``: N-vectors); around the data's mean (0 after
    normalising) a scale above 1 raises the contrast, one below lowers it."""
    return (x + shift.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1)


class BatchIterator:
    """Iterate (images, labels) batches over a split, one epoch per ``iter()``.

    Yields float32 N×3×32×32 normalised images and int64 N labels on ``device``.
    Shuffling and augmentation of epoch ``e`` depend only on (``seed``, ``e``), so a resumed run
    replays exactly the batches of an uninterrupted one: set ``epoch`` and iterate.

    flip: None, "random" (each image with probability 1/2) or "alternating" (a random half in
    even epochs and the other half in odd ones: every image is seen both ways every two epochs,
    which airbench measured to be worth a little accuracy over random flipping).
    translate: maximum shift in pixels (0 = off), reflect-filled.
    crop_size: when set (an attribute, like ``epoch``: training changes it between epochs), each
    image of the epoch is cut to a random crop_size×crop_size window after flipping and shifting:
    smaller images, fewer FLOPs per step, for models that accept any size (airbench).
    crop_window: when set, the smallest side of those windows as a fraction of the image's: each
    window's side is drawn in [crop_window, 1] and the window resized to crop_size×crop_size
    (``resize_window``), so that it holds more of the object than crop_size pixels of it would.
    keep: when set (an attribute too: a bool CPU tensor, one per image), an epoch takes only
    the images marked True, in the order it would take them anyway; ``order`` then holds the
    epoch's images (this rank's, on the device): batch k is ``order[k·B : (k+1)·B]``.
    brightness, contrast: random colour jitter (0 = off): each image's normalised values get a
    shift uniform in ±brightness, then a scale uniform in 1 ± contrast (see ``jitter``).
    drop_last: drop the final partial batch (training wants equal-size steps) or keep it
    (evaluation must see every image). ``shard=(rank, world)`` yields this process's part of every
    epoch for data-parallel training: positions rank, rank + world, ... of the epoch's order, with
    the flips and shifts those positions get in one process, so batch k of all ranks together is
    batch k of a single process with a ``world`` times larger batch.
    """

    def __init__(self, split: CifarSplit, batch_size: int, *, mean=HALF_MEAN_STD[0], std=HALF_MEAN_STD[1],
                 device: torch.device | str = "cpu", shuffle: bool = True, flip: str | None = None,
                 translate: int = 0, drop_last: bool = False, seed: int = 0,
                 shard: tuple[int, int] = (0, 1), channels_last: bool = False,
                 brightness: float = 0.0, contrast: float = 0.0,
                 crop_window: float | None = None):
        if flip not in (None, "random", "alternating"):
            raise ValueError(f"flip must be None, 'random' or 'alternating', got {flip!r}")
        self.device = torch.device(device)
        # The whole split moves to the device once: 150 MB of uint8 for CIFAR-10's training set.
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.mean, self.std = channel_stats(mean, self.device), channel_stats(std, self.device)
        self.shuffle, self.flip, self.pad = shuffle, flip, translate
        self.drop_last, self.seed, self.epoch = drop_last, seed, 0
        self.rank, self.world = shard
        self.channels_last = channels_last
        self.brightness, self.contrast = brightness, contrast
        self.crop_size: int | None = None
        self.crop_window = crop_window
        self._crop_schedule = None  # epoch → crop size (None: whole images), from a config
        self.keep: torch.Tensor | None = None  # bool per image: an epoch takes only these
        self.order: torch.Tensor | None = None  # the epoch being iterated: its images, in order

    @classmethod
    def for_training(cls, split: CifarSplit, cfg, *, device: torch.device | str = "cpu",
                     shard: tuple[int, int] = (0, 1), channels_last: bool = False
                     ) -> "BatchIterator":
        """The shuffled, augmented training batches of ``cfg`` (a ``TrainConfig``: batch size,
        normalisation, flips, shifts, colour jitter, seed, and the crop size of each epoch,
        applied by ``set_epoch``), in one step."""
        it = cls(split, cfg.batch_size, mean=cfg.mean, std=cfg.std, device=device, shuffle=True,
                 flip=cfg.flip, translate=cfg.translate, drop_last=True, seed=cfg.seed,
                 shard=shard, channels_last=channels_last, brightness=cfg.brightness,
                 contrast=cfg.contrast, crop_window=cfg.crop_window)
        it._crop_schedule = cfg.crop_size_at
        return it

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s order and augmentations next, on its crop size when built
        ``for_training``."""
        self.epoch = epoch
        if self._crop_schedule is not None:
            self.crop_size = self._crop_schedule(epoch)

    def _per_rank(self) -> int:
        n = len(self.labels) if self.keep is None else int(self.keep.sum())
        return math.ceil(n / self.world) if not self.drop_last else n // self.world

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self, stream: int) -> torch.Generator:
        g = torch.Generator()  # CPU generator: the same numbers on every device
        g.manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + stream)
        return g

    def _shard(self, per_position: torch.Tensor) -> torch.Tensor:
        """This rank's part of a tensor with one row per position of the whole epoch's order.

        Strided, not in blocks: rank r's batch k is then positions [k·B·world, (k+1)·B·world)
        of the epoch, r-th of every ``world``; the ranks' batches k are one global batch.
        """
        if self.world == 1:
            return per_position
        n = len(per_position)
        if self.drop_last:  # the ragged end falls in the last, dropped, partial global batch
            per_position = per_position[: n - n % self.world]
        else:  # pad by repeating from the start so every rank takes equal steps
            per_position = torch.cat([per_position, per_position[: (-n) % self.world]])
        return per_position[self.rank::self.world]

    def epoch_order(self) -> torch.Tensor:
        """Indices of this rank's images for the current epoch (int64 on CPU)."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self._generator(0)) if self.shuffle else torch.arange(n)
        if self.keep is not None:  # the kept images, in the same shuffled order
            order = order[self.keep[order]]
        return self._shard(order)

    def _flip_mask(self, idx: torch.Tensor) -> torch.Tensor:
        if self.flip == "random":  # drawn for every position of the epoch, then sharded
            return self._shard(torch.rand(len(self.labels), generator=self._generator(1)) < 0.5)
        base = torch.Generator().manual_seed(self.seed)  # fixed across epochs, then alternated
        per_image = torch.rand(len(self.labels), generator=base) < 0.5
        return per_image[idx] ^ bool(self.epoch % 2)

    def epoch_draws(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The current epoch's random draws, on the CPU, one row per position of this rank's
        order: (image indices int64, mirror or not bool or None without flips, (dy, dx) shifts
        int64 ×2 or None without translation). Iterating applies exactly these."""
        order = self.epoch_order()
        flips = self._flip_mask(order) if self.flip else None
        shifts = (self._shard(torch.randint(-self.pad, self.pad + 1, (len(self.labels), 2),
                                            generator=self._generator(2)))
                  if self.pad else None)
        return order, flips, shifts

    def _crops(self) -> bool:
        """Whether the current epoch trains on windows smaller than the images."""
        return self.crop_size is not None and self.crop_size < self.images.shape[-1]

    def crop_corners(self) -> torch.Tensor | None:
        """The current epoch's crop windows: top-left (row, column) int64 ×2 on the CPU, one row
        per position of this rank's order, or None when ``crop_size`` is unset or whole, or
        when ``crop_window`` resizes the windows instead (``window_draws``)."""
        if not self._crops() or self.crop_window is not None:
            return None
        return self._shard(torch.randint(0, self.images.shape[-1] - self.crop_size + 1,
                                         (len(self.labels), 2), generator=self._generator(3)))

    def window_draws(self) -> torch.Tensor | None:
        """The current epoch's resized windows: float32 ×3 on the CPU, the draws that
        ``resize_window`` takes, one row per position of this rank's order, or None unless the
        epoch crops and ``crop_window`` is set."""
        if not self._crops() or self.crop_window is None:
            return None
        return self._shard(torch.rand(len(self.labels), 3, generator=self._generator(5)))

    def jitter_draws(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The current epoch's colour jitter: (shift, scale) float32 on the CPU, one entry per
        position of this rank's order, or None when both ``brightness`` and ``contrast`` are 0."""
        if not (self.brightness or self.contrast):
            return None
        u = torch.rand(len(self.labels), 2, generator=self._generator(4)) * 2 - 1  # in [-1, 1)
        u = self._shard(u)
        return u[:, 0] * self.brightness, 1 + u[:, 1] * self.contrast

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The epoch's order, flips and shifts are drawn on the CPU (the same numbers on every
        # device) and copied to the device once per epoch: no host→device copy per batch.
        order, flips, shifts = self.epoch_draws()
        corners, windows = self.crop_corners(), self.window_draws()
        flips = flips.to(self.device) if flips is not None else None
        shifts = shifts.to(self.device) if shifts is not None else None
        corners = corners.to(self.device) if corners is not None else None
        windows = windows.to(self.device) if windows is not None else None
        jitters = self.jitter_draws()
        if jitters is not None:
            jitters = tuple(j.to(self.device) for j in jitters)
        order = self.order = order.to(self.device)  # batch k is order[k·B : (k+1)·B]
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            sel = slice(start, start + self.batch_size)
            if self.drop_last and len(order[sel]) < self.batch_size:
                break
            idx = order[sel]
            x = normalize(self.images[idx], self.mean, self.std)
            if flips is not None:
                x = flip_some(x, flips[sel])
            if shifts is not None:
                x = translate(x, shifts[sel], self.pad)
            if corners is not None:
                x = crop(x, corners[sel], self.crop_size, self.crop_size)
            if windows is not None:
                x = resize_window(x, windows[sel], self.crop_window, self.crop_size)
            if jitters is not None:
                x = jitter(x, jitters[0][sel], jitters[1][sel])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
