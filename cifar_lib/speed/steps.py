"""Training throughput (images/s) of each recipe on the CPU and on each GPU present.

Measured as a benchmark by ``python -m cifar_lib bench throughput``.

The original notebook's headline, measured: how much faster does training run on a GPU? For
each recipe and device the training is built exactly as ``fit`` builds it (``train.prepare``:
model, optimiser, precision, memory layout, batches made on the device), then ``--warmup``
steps run untimed (memory allocation, kernel selection) and ``--steps`` steps are timed, the
clock read after synchronising the GPU at both ends. Producing the batches (normalise, flip,
translate) is part of each step, as in ``fit``. ``speedup_vs_cpu`` is a GPU row's images/s over
the CPU row's, for the same recipe; without a GPU the GPU rows say "no GPU available".
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, Sequence

import torch

from ..batches import BatchIterator
from ..config import TrainConfig
from ..data import CifarSplit, load_cifar10
from ..device import cpu_model, precision_name, select_device
from ..errors import UsageError
from ..inference import autocast
from ..recipes import configure
from ..train import Training, prepare, train_step, training_images
from .clock import synced_clock

DEFAULT_RECIPES = ("original", "fast")


NO_GPU = "no GPU available"


STEPS, WARMUP = 20, 3


# --quick: a smoke test (2,048 training images, at most 256 per batch, 2 + 3 steps).
QUICK_STEPS, QUICK_WARMUP = 3, 2


ROW_KEYS = ("recipe", "model", "device", "device_name", "status", "precision", "channels_last",
            "batch_size", "warmup", "steps", "seconds", "seconds_per_step", "images_per_s",
            "crop_size", "crop_images_per_s", "speedup_vs_cpu")


def devices_for(requested: str | Sequence[str] = "all") -> list[str]:
    """'all' → the CPU and every CUDA GPU present ('cuda' alone when there is none, so that its
    row can say so); 'auto' → the one device training would use (``select_device``);
    otherwise the names given."""
    if isinstance(requested, str):
        requested = [requested]
    out = []
    for name in requested:
        if name == "all":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            out += ["cpu"] + ([f"cuda:{i}" for i in range(n)] if n else ["cuda"])
        elif name == "auto":
            out.append(str(select_device("auto")))
        elif name in ("cpu", "cuda", "mps") or name.startswith("cuda:"):
            out.append(name)
        else:
            raise UsageError(f"unknown benchmark device {name!r}: use 'all', 'auto', 'cpu', "
                             f"'cuda', 'cuda:N' or 'mps'")
    return list(dict.fromkeys(out))  # in order, without repeats


def endless(batches: Iterable) -> Iterator:
    """Batches of epoch after epoch (a ``BatchIterator`` reshuffles at every ``iter()``)."""
    for _ in itertools.count():
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise UsageError("no batches to time: the data set is smaller than one batch")


def time_steps(step: Callable[[torch.Tensor, torch.Tensor, int], object], batches: Iterable,
               steps: int, warmup: int, device: torch.device | str) -> float:
    """Seconds for ``steps`` calls of ``step(x, y, i)`` on successive batches, after ``warmup``
    untimed calls; on a GPU the clock is read only once the queued work has finished, at the
    start and at the end."""
    if steps < 1 or warmup < 0:
        raise UsageError(f"steps must be ≥ 1 and warmup ≥ 0, got steps={steps}, "
                         f"warmup={warmup}")
    it = endless(batches)
    for i in range(warmup):
        step(*next(it), i)
    t0 = synced_clock(device)
    for i in range(warmup, warmup + steps):
        step(*next(it), i)
    return synced_clock(device) - t0


def _name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "Apple GPU (MPS)" if device.type == "mps" else cpu_model()


def _row(**values) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(values)
    return row


def measure(t: Training, steps: int, warmup: int) -> dict:
    """images/s of ``train_step`` on the prepared training ``t`` (one row's measured fields)."""
    t.ddp_model.train()

    def step(x, y, i):
        train_step(t, x, y, i % t.total_steps)  # past the end, restart the schedule

    seconds = time_steps(step, t.batches, steps, warmup, t.device)
    return {"seconds": seconds, "seconds_per_step": seconds / steps,
            "images_per_s": steps * t.cfg.batch_size / seconds}


def evaluation_passes(cfg: TrainConfig) -> float:
    """Forward passes over the test set that ``fit(cfg, ...)`` makes: one per evaluated epoch
    (or one at the end when ``eval_every`` is 0), plus 2 (TTA level 1) or 6 (level 2), or with
    ``tta_fraction`` f < 1, one plain pass and the other views for that fraction: 1 + (views − 1)·f."""
    evaluated = sum(1 for e in range(1, cfg.epochs + 1)
                    if cfg.eval_every and (e % cfg.eval_every == 0 or e == cfg.epochs))
    views = {0: 0, 1: 2, 2: 6}[cfg.tta_level]
    # the plain view for every image, the others for the fraction: all views when it is 1
    tta = 1 + (views - 1) * cfg.tta_fraction if views else 0
    return max(evaluated, 1) + tta


def estimate_fit_seconds(cfg: TrainConfig, train: CifarSplit, test: CifarSplit, *,
                         steps: int = 3, warmup: int = 1, eval_batch: int = 250) -> dict:
    """How long ``fit(cfg, train, test)`` will take on this machine, from a few timed steps.

    The run is built as ``fit`` builds it (``training_images``, the test subset, ``prepare``);
    ``steps`` training steps are timed after ``warmup`` untimed ones (``measure``), then one
    test batch of up to ``eval_batch`` images is timed through the model in eval mode (after
    one untimed batch, unless ``warmup`` is 0: a rougher, quicker guess).
    With ``crop_epochs``, steps on each crop size are timed as well and counted for its epochs;
    epochs on their hardest images count only their steps.
    Returns a dict: device, precision, batch_size, steps_per_epoch (of an epoch on every
    image), total_steps (of the whole run),
    seconds_per_step (on whole images), train_seconds (every step), eval_passes
    (``evaluation_passes``), eval_images, eval_seconds, seconds_per_epoch (training and one
    evaluation) and total_seconds. Loading the data and starting up are not counted.
    """
    device = select_device(cfg.device)
    train, test = training_images(cfg, train), test.subset(cfg.test_subset)
    t = prepare(cfg, train, device)
    seconds_per_step = measure(t, steps, warmup)["seconds_per_step"]
    # an epoch on its hardest images takes fewer steps: the kept images as HardestImages.keep
    # counts them, this process's share of them, whole batches (as len(BatchIterator) counts)
    kept = [int(cfg.hardest_fraction_at(e) * len(t.batches.labels)) for e in range(cfg.epochs)]
    epoch_steps = [n // t.batches.world // cfg.batch_size for n in kept]
    train_seconds = sum(epoch_steps) * seconds_per_step
    for size in sorted({cfg.crop_size_at(e) for e in range(min(cfg.crop_epochs, cfg.epochs))}):
        t.batches.crop_size = size  # those epochs' steps are cheaper: time each size too
        per_crop_step = measure(t, steps, warmup)["seconds_per_step"]
        t.batches.crop_size = None
        train_seconds += (sum(n for e, n in enumerate(epoch_steps) if cfg.crop_size_at(e) == size)
                          * (per_crop_step - seconds_per_step))
    model = t.model.eval()

    def forward(x, y, i):
        with torch.inference_mode(), autocast(device, t.amp_dtype):
            model(x)

    batch = max(1, min(eval_batch, len(test)))
    batches = BatchIterator(test, batch, mean=cfg.mean, std=cfg.std, device=device,
                            shuffle=False)
    per_image = time_steps(forward, batches, steps=1, warmup=min(warmup, 1), device=device) / batch
    model.train()
    passes = evaluation_passes(cfg)
    out = {"device": str(device),
           "precision": precision_name(t.amp_dtype),
           "batch_size": cfg.batch_size, "steps_per_epoch": t.steps_per_epoch,
           "total_steps": sum(epoch_steps), "seconds_per_step": seconds_per_step,
           "train_seconds": train_seconds, "eval_passes": passes,
           "eval_images": len(test), "eval_seconds": passes * len(test) * per_image,
           "seconds_per_epoch": t.steps_per_epoch * seconds_per_step + len(test) * per_image}
    out["total_seconds"] = out["train_seconds"] + out["eval_seconds"]
    return out


def _add_speedups(rows: list[dict]) -> None:
    """speedup_vs_cpu = images/s over the same recipe's CPU images/s (1 on the CPU itself)."""
    cpu = {r["recipe"]: r["images_per_s"] for r in rows
           if r["device"] == "cpu" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and cpu.get(r["recipe"]):
            r["speedup_vs_cpu"] = r["images_per_s"] / cpu[r["recipe"]]


def run(recipes: Sequence[str] = DEFAULT_RECIPES, devices: str | Sequence[str] = "all",
        steps: int | None = None, warmup: int | None = None, root=None, quick: bool = False,
        download: bool = False, log: Callable[[str], None] | None = None) -> list[dict]:
    """One row (ROW_KEYS) per recipe × device: training images/s over ``steps`` timed steps
    after ``warmup`` untimed ones (None: 20 and 3, or 3 and 2 when ``quick``), seconds per
    step, the autocast precision ('fp32' when none), channels-last, batch size, device name
    (CPU model or GPU name), ``speedup_vs_cpu`` (None where no GPU), and 'status': 'ok' or
    NO_GPU; for a recipe with crop epochs also images/s on its first epoch's crops
    (``crop_size``, ``crop_images_per_s``; None otherwise). ``quick``: each recipe's quick
    settings (2,048 training images, batch ≤ 256, and no larger than the data). ``devices``: see
    ``devices_for``. ``root``, ``download``: as for ``load_cifar10``.
    """
    log = log or (lambda s: None)
    steps = steps if steps is not None else (QUICK_STEPS if quick else STEPS)
    warmup = warmup if warmup is not None else (QUICK_WARMUP if quick else WARMUP)
    if steps < 1 or warmup < 0:
        raise UsageError(f"steps must be ≥ 1 and warmup ≥ 0, got steps={steps}, "
                         f"warmup={warmup}")
    train, _test = load_cifar10(root, download=download)
    rows = []
    for recipe in recipes:
        for dev in devices_for(devices):
            cfg = configure(recipe, quick=quick, device=dev)
            base = dict(recipe=recipe, model=cfg.model, device=dev, warmup=warmup, steps=steps)
            if dev.startswith("cuda") and not torch.cuda.is_available():
                rows.append(_row(**base, status=NO_GPU, batch_size=cfg.batch_size))
                continue
            split = train.subset(cfg.train_subset)
            if quick and cfg.batch_size > len(split):  # tiny test data: still a few steps
                cfg = cfg.replace(batch_size=len(split))
            device = select_device(dev)  # a GPU that is not there: one clear DeviceError
            t = prepare(cfg, split, device)
            row = _row(**base, status="ok", batch_size=cfg.batch_size, device_name=_name(device),
                       precision=precision_name(t.amp_dtype),
                       channels_last=t.batches.channels_last)
            row.update(measure(t, steps, warmup))
            if cfg.crop_epochs:  # its first epochs train on smaller crops: time those too
                row["crop_size"] = t.batches.crop_size = cfg.crop_size_at(0)
                row["crop_images_per_s"] = measure(t, steps, warmup)["images_per_s"]
                t.batches.crop_size = None
            rows.append(row)
            log(f"{recipe:10s} {dev:7s}: {row['images_per_s']:,.0f} images/s")
            del t
            if device.type == "cuda":
                torch.cuda.empty_cache()
    _add_speedups(rows)
    return rows
