"""Training: one ``fit`` for every recipe, with progress, history, checkpoints and resume.

``fit`` reads as the steps of a run: ``prepare`` (model, optimiser, batches), ``restore`` (when
resuming), then ``train_one_epoch`` (each ``train_step``: schedule, forward under autocast,
backward, step, lookahead), an evaluation and a checkpoint per epoch, and ``final_metrics``.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .batches import BatchIterator, normalize
from .calibration import CALIBRATION
from .ood import OOD_JSON, OOD_TENSORS
from .checkpoint import (
    CHECKPOINT,
    HISTORY,
    METRICS,
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    unwrap,
)
from .config import ConfigError, TrainConfig
from .data import CifarSplit, split_validation, validation_size
from .device import (
    autocast_dtype,
    keep_freed_memory,
    precision_name,
    select_device,
    sync,
    use_channels_last,
)
from .files import read_json, write_json
from .inference import autocast
from .models import AirbenchNet, build_model, count_parameters
from .muon import Muon


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message suggests a fix."""


@dataclass
class FitResult:
    """What ``fit`` returns. ``model``: the trained network, on the device it trained on, in
    eval mode; it maps normalised float N×3×32×32 to logits N×10 and carries no normalisation,
    so to predict or evaluate use ``load_run(run_dir)`` (the checkpoint knows its mean, std and
    classes). ``history``: one dict per epoch (epoch, images, train loss and accuracy, seconds,
    images per second, lr, and test loss and accuracy when evaluated). ``metrics``: the final
    test loss and accuracy (and with TTA when the recipe uses it), the training images and
    seconds, model, seed, device and precision (also written as ``metrics.json``)."""
    model: nn.Module
    history: list[dict]
    metrics: dict


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_multiplier(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Schedule value in [0, 1] at ``step`` of ``total_steps``."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "triangle":
        return float(np.interp(step, [0, int(cfg.lr_peak_at * total_steps), total_steps],
                               [cfg.lr_start, 1.0, cfg.lr_end]))
    raise ValueError(f"unknown schedule {cfg.schedule!r}: use 'constant' or 'triangle'")


def lr_schedule(cfg: TrainConfig, total_steps: int) -> list[float]:
    """``lr_multiplier`` at every step 0 … total_steps − 1 of a run (multiply by ``cfg.lr``)."""
    return [lr_multiplier(cfg, step, total_steps) for step in range(total_steps)]


def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """The soft targets N×num_classes that ``F.cross_entropy(..., label_smoothing=smoothing)``
    compares the predictions with: 1 − smoothing on the true class, then smoothing spread
    evenly over all classes (the true one included), so each row sums to 1."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1 - smoothing) + smoothing / num_classes


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam; Nesterov SGD with faster-learning biases (BatchNorm and whitening); or ``Muon``:
    the same SGD for biases and the head, Muon for the conv filters (4-D weights)."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen weights stay out
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer not in ("sgd", "muon"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use 'adam', 'sgd' or 'muon'")
    bias_ids = {id(m.bias) for m in model.modules()
                if isinstance(m, nn.BatchNorm2d) and m.bias is not None}
    whiten = _whiten_bias(model)
    bias_lr = cfg.lr * cfg.bias_lr_scale
    # Decay per step is lr × weight_decay; keep it equal for biases despite their larger lr.
    bias_group = dict(lr=bias_lr, weight_decay=cfg.weight_decay * cfg.lr / bias_lr)
    if cfg.optimizer == "sgd":
        if whiten is not None:
            bias_ids.add(id(whiten))
        groups = [dict(params=[p for p in params if id(p) not in bias_ids], lr=cfg.lr,
                       weight_decay=cfg.weight_decay),
                  dict(params=[p for p in params if id(p) in bias_ids], **bias_group)]
        return torch.optim.SGD(_with_base_lr(groups), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=True)
    sgd = dict(muon=False, momentum=cfg.momentum)
    in_group = {id(p) for p in params if p.ndim == 4} | bias_ids | {id(whiten)}
    groups = [dict(params=[p for p in params if p.ndim == 4], lr=cfg.muon_lr,
                   momentum=cfg.muon_momentum),
              dict(params=[p for p in params if id(p) in bias_ids], **bias_group, **sgd),
              # airbench94_muon: the whitening bias's lr decays to 0 over its epochs, not over
              # the whole run (``train_step`` reads ``schedule_epochs``).
              dict(params=[p for p in params if p is whiten], **bias_group, **sgd,
                   schedule_epochs=cfg.whiten_bias_epochs),
              dict(params=[p for p in params if id(p) not in in_group], lr=cfg.lr,
                   weight_decay=cfg.weight_decay, **sgd)]
    return Muon(_with_base_lr(groups))


def _with_base_lr(groups: list[dict]) -> list[dict]:
    """The non-empty groups, each remembering its peak lr (the schedule multiplies it)."""
    for g in groups:
        g["base_lr"] = g["lr"]
    return [g for g in groups if g["params"]]


def _whiten_bias(model: nn.Module):
    model = unwrap(model)
    whitening = model.whitening if isinstance(model, AirbenchNet) else None
    return whitening.bias if whitening is not None else None


class Lookahead:
    """Slow copy of the float weights and buffers; every update moves it towards the net and
    copies it back (airbench's lookahead: a cheap, schedule-aware weight average)."""

    def __init__(self, model: nn.Module):
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].lerp_(value, 1 - decay)
                value.copy_(self.state[key])

    @staticmethod
    def decay(step: int, total_steps: int) -> float:
        """0 at the start (no averaging), rising as (step/total)³ to 0.95⁵ at the end."""
        return 0.95 ** 5 * (step / total_steps) ** 3


class HardestImages:
    """Each training image's loss when last trained on (float32 N, on the device; +inf until
    seen), and the hardest ``fraction`` of the images by it: what an epoch trains on when
    ``cfg.hardest_fraction_at(epoch)`` < 1. The losses come from the steps' own logits, so choosing
    costs no extra pass; they are a few steps stale, which is what makes them free."""

    def __init__(self, n: int, device: torch.device):
        self.loss = torch.full((n,), math.inf, device=device)
        self._new = torch.zeros(2, n, device=device)  # this epoch's (losses, seen): merged later

    @torch.no_grad()
    def note(self, idx: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Images ``idx`` (int64 B) got ``logits`` (B×classes) for ``labels`` (int64 B)."""
        self._new[0, idx] = F.cross_entropy(logits.float(), labels, reduction="none")
        self._new[1, idx] = 1.0

    def end_epoch(self, dist: distributed.Context) -> None:
        """Take in the epoch's losses, every process's (each trained on its own images)."""
        new = dist.sum(self._new)
        seen = new[1] > 0
        self.loss[seen] = new[0][seen]
        self._new.zero_()

    def keep(self, fraction: float) -> torch.Tensor:
        """bool N (CPU): True for the ``fraction`` of the images with the highest loss."""
        keep = torch.zeros(len(self.loss), dtype=torch.bool)
        keep[self.loss.topk(int(fraction * len(self.loss))).indices.cpu()] = True
        return keep


def _check_finite(loss: float, epoch: int, step: int, cfg: TrainConfig) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss became {loss} at epoch {epoch + 1}, step {step}: training diverged. "
            f"Lower the learning rate (lr={cfg.lr}) or use precision='fp32'.")


@dataclass
class Training:
    """A run in progress: what ``prepare`` builds and every later step reads or updates."""
    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    dist: distributed.Context
    model: nn.Module                  # the plain model (saved, evaluated, averaged)
    ddp_model: nn.Module              # what the steps run: the model, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    lookahead: Lookahead | None
    scaler: torch.amp.GradScaler
    batches: BatchIterator
    history: list[dict]
    steps_per_epoch: int              # of an epoch over every image: the schedule's unit
    hardest: HardestImages | None = None  # when epochs train on their hardest images only
    start_epoch: int = 0

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch


def prepare(cfg: TrainConfig, train: CifarSplit, device: torch.device,
            dist: distributed.Context | None = None) -> Training:
    """Seed everything, then build the model (whitening fitted to ``train``), optimiser,
    lookahead, gradient scaler and training batches on ``device``."""
    dist = dist or distributed.Context(device=device)
    amp_dtype = autocast_dtype(device, cfg.precision)
    channels_last = use_channels_last(device, cfg.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    else:
        keep_freed_memory()  # no page faults for memory each step frees and allocates again
    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    if isinstance(model, AirbenchNet) and model.whitening is not None:
        model.whitening.init_from(normalize(train.images[:5000], cfg.mean, cfg.std))
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    lookahead = Lookahead(model) if cfg.lookahead else None
    # fp16 only: the loss is scaled so that small gradients do not underflow to zero.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    batches = BatchIterator.for_training(train, cfg, device=device,
                                         shard=(dist.rank, dist.world_size),
                                         channels_last=channels_last)
    if len(batches) == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {len(train)} training "
                          f"images per process: lower batch_size or use more data")
    hardest = None
    fewest = cfg.fewest_hardest_fraction()
    if fewest < 1:
        hardest = HardestImages(len(train), device)
        if int(fewest * len(train)) // dist.world_size < cfg.batch_size:
            raise ConfigError(f"hardest_fraction {fewest} of {len(train)} training images is "
                              f"less than one batch of {cfg.batch_size} per process: raise "
                              f"hardest_fraction or lower batch_size")
    return Training(cfg=cfg, device=device, amp_dtype=amp_dtype, dist=dist, model=model,
                    ddp_model=model, optimizer=optimizer, lookahead=lookahead, scaler=scaler,
                    batches=batches, history=[], steps_per_epoch=len(batches), hardest=hardest)


# What a resumed run may change: where it runs and how often it is evaluated, not what it learns.
RESUMABLE_CHANGES = ("device", "channels_last", "eval_every", "test_subset")


def changed_settings(saved: dict, cfg: TrainConfig) -> list[str]:
    """``cfg``'s settings that differ from ``saved`` (a checkpoint's ``config``), as
    "name=<saved> (now <new>)", leaving out ``RESUMABLE_CHANGES`` and fields ``saved`` lacks."""
    saved = json.loads(json.dumps(saved))  # tuples as lists, as the checkpoint holds them
    now = json.loads(json.dumps(cfg.to_dict()))
    return [f"{name}={saved[name]!r} (now {value!r})" for name, value in now.items()
            if name not in RESUMABLE_CHANGES and name in saved and saved[name] != value]


def restore(t: Training, ckpt_path: Path | None) -> None:
    """Continue from the last finished epoch saved at ``ckpt_path``: weights, optimiser,
    lookahead and scaler state, all moved to the model's device, and the history so far.
    Refuses a run started with other settings (``changed_settings``)."""
    if ckpt_path is None:
        raise CheckpointError("resume=True needs run_dir: the folder of the run to continue")
    ckpt = load_checkpoint(ckpt_path, map_location=t.device)
    load_weights(t.model, ckpt, model_name=t.cfg.model)
    if "optimizer" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is a finished run ({ckpt['epoch']} epochs), "
                              f"nothing to resume; train into a new run folder (or, if it "
                              f"lacks calibration.json, python -m cifar_lib calibrate)")
    changed = changed_settings(ckpt.get("config", {}), t.cfg)
    if changed:
        raise CheckpointError(f"{ckpt_path} was started with other settings: "
                              f"{', '.join(changed)}; resume it with the settings it started "
                              f"with, or train a new run (command line: --overwrite)")
    t.optimizer.load_state_dict(ckpt["optimizer"])
    if t.lookahead is not None:
        t.lookahead.state = ckpt["lookahead"]
    torch.set_rng_state(ckpt["rng"].cpu())  # the CPU generator's state is a CPU tensor
    if ckpt.get("scaler"):
        t.scaler.load_state_dict(ckpt["scaler"])
    if t.hardest is not None:
        if ckpt.get("hardest_loss") is None:  # a checkpoint without saved settings
            raise CheckpointError(f"{ckpt_path} was not training on its hardest images: resume "
                                  f"it with the settings it started with (hardest_fraction=1)")
        t.hardest.loss = ckpt["hardest_loss"].to(t.device)
    t.start_epoch, t.history = ckpt["epoch"], list(ckpt["history"])


def train_step(t: Training, x: torch.Tensor, y: torch.Tensor, step: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch (x float N×3×32×32, y int64 N) at global ``step``, in
    micro-batches of ``cfg.micro_batch`` images when set (gradients summed, one step); returns
    (loss, logits N×10), still on the device: reading them would wait for the GPU."""
    cfg = t.cfg
    for group in t.optimizer.param_groups:
        epochs = group.get("schedule_epochs")  # a group on a shorter schedule of its own
        total = epochs * t.steps_per_epoch if epochs else t.total_steps
        group["lr"] = group.get("base_lr", cfg.lr) * lr_multiplier(cfg, step, total)
    t.optimizer.zero_grad(set_to_none=True)
    size = cfg.micro_batch or len(y)
    parts = list(zip(x.split(size), y.split(size)))
    losses, logits = [], []
    for k, (xk, yk) in enumerate(parts):
        # Under DDP the gradients are averaged across ranks once, after the last micro-batch.
        sync = contextlib.nullcontext() if k == len(parts) - 1 else getattr(
            t.ddp_model, "no_sync", contextlib.nullcontext)()
        with sync:
            with autocast(t.device, t.amp_dtype):
                out = t.ddp_model(xk)
                # the batch's mean loss, as a sum of the micro-batches' weighted means
                part = F.cross_entropy(out, yk, label_smoothing=cfg.label_smoothing) \
                    * (len(yk) / len(y))
            t.scaler.scale(part).backward()
        losses.append(part.detach())
        logits.append(out.detach())
    loss, logits = torch.stack(losses).sum(), torch.cat(logits)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    if t.lookahead is not None and (step + 1) % 5 == 0:
        t.lookahead.update(t.model, Lookahead.decay(step + 1, t.total_steps))
    return loss, logits


def _freeze_whitening_bias_after(t: Training, epoch: int) -> None:
    """The whitening bias trains for ``whiten_bias_epochs`` epochs, then stays fixed."""
    whiten = _whiten_bias(t.model)
    trainable = epoch < t.cfg.whiten_bias_epochs
    if whiten is not None and whiten.requires_grad != trainable:
        whiten.requires_grad_(trainable)
        t.ddp_model = t.dist.wrap(t.model)  # DDP must know which parameters get gradients


def train_one_epoch(t: Training, epoch: int, bar: tqdm) -> dict:
    """Every step of epoch ``epoch`` (0-based); returns its history row (loss, accuracy, time)."""
    t.batches.set_epoch(epoch)
    if t.hardest is not None:
        fraction = t.cfg.hardest_fraction_at(epoch)
        t.batches.keep = t.hardest.keep(fraction) if fraction < 1 else None
    _freeze_whitening_bias_after(t, epoch)
    # The schedule runs on whole epochs: an epoch of m < steps_per_epoch batches moves it as far
    # as an epoch of every image, in m steps.
    steps, m = t.steps_per_epoch, len(t.batches)
    t.ddp_model.train()
    # Reading a GPU number makes the CPU wait for the GPU: on CUDA the bar is updated once an
    # epoch; on a CPU, where it costs nothing, every 20 steps.
    report_every = 20 if t.device.type == "cpu" else t.steps_per_epoch
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=t.device)
    correct = torch.zeros((), device=t.device, dtype=torch.long)
    seen = 0
    for i, (x, y) in enumerate(t.batches):
        loss, logits = train_step(t, x, y, epoch * steps + i * steps // m)
        if t.hardest is not None:
            B = t.batches.batch_size  # batch i is order[i·B : (i + 1)·B]
            t.hardest.note(t.batches.order[i * B:(i + 1) * B], logits, y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if i % report_every == 0 or i == m - 1:
            running = loss_sum.item() / seen
            _check_finite(running, epoch, i, t.cfg)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running:.3f}",
                            acc=f"{correct.item() / seen:.3f}")
        bar.update((i + 1) * steps // m - i * steps // m)  # the schedule's steps, as fit counts
    if t.lookahead is not None and epoch == t.cfg.epochs - 1:
        t.lookahead.update(t.model, 1.0)  # finish on the averaged weights
    if t.hardest is not None:
        t.hardest.end_epoch(t.dist)
    sync(t.device)  # the epoch's time is its work, not the launch of its last kernels
    seconds = time.perf_counter() - t0
    dist = t.dist
    return {"epoch": epoch + 1, "images": seen * dist.world_size,
            "train_loss": dist.mean(loss_sum.item() / seen),
            "train_acc": dist.mean(correct.item() / seen), "seconds": seconds,
            "train_seconds": (t.history[-1]["train_seconds"] if t.history else 0.0) + seconds,
            "images_per_second": seen * dist.world_size / seconds,
            "lr": t.optimizer.param_groups[0]["lr"]}


def save_progress(t: Training, ckpt_path: Path | None, classes, epochs_done: int,
                  final: bool = False) -> None:
    """Checkpoint after ``epochs_done`` epochs (rank 0 only); ``final`` drops the resume state."""
    if ckpt_path is None or not t.dist.is_main:
        return
    cfg = t.cfg
    state = {} if final else dict(optimizer=t.optimizer.state_dict(),
                                  lookahead=t.lookahead.state if t.lookahead else None,
                                  rng=torch.get_rng_state(), scaler=t.scaler.state_dict(),
                                  hardest_loss=t.hardest.loss.cpu() if t.hardest else None)
    save_checkpoint(ckpt_path, t.model, model_name=cfg.model, model_kwargs=cfg.model_kwargs,
                    classes=classes, mean=cfg.mean, std=cfg.std, config=cfg.to_dict(),
                    epoch=epochs_done, history=t.history, **state)


def _evaluate(t: Training, test: CifarSplit, tta_level: int = 0, with_plain: bool = False):
    return t.dist.evaluate(t.model, test, mean=t.cfg.mean, std=t.cfg.std, tta_level=tta_level,
                           amp_dtype=t.amp_dtype, tta_fraction=t.cfg.tta_fraction,
                           with_plain=with_plain)


def split_for(cfg: TrainConfig, train: CifarSplit) -> tuple[CifarSplit, CifarSplit]:
    """(the images ``cfg`` trains on, its validation split): ``cfg.val_fraction`` of ``train``
    held out by ``data.split_validation``, the same images for every run."""
    return split_validation(train, validation_size(len(train), cfg.val_fraction))


def training_images(cfg: TrainConfig, train: CifarSplit) -> CifarSplit:
    """The images ``fit(cfg, train, ...)`` trains on: ``train`` less its validation split
    (``split_for``), then the first ``cfg.train_subset`` of them."""
    return split_for(cfg, train)[0].subset(cfg.train_subset)


def fit(cfg: TrainConfig, train: CifarSplit, test: CifarSplit, *, run_dir: str | Path | None = None,
        resume: bool = False, callbacks: Iterable[Callable[[dict], None]] = (),
        progress: bool = True) -> FitResult:
    """Train ``cfg.model`` on ``train`` less its validation split, evaluating on ``test``.

    ``split_for(cfg, train)``'s validation images are held out: they train nothing and are
    left for choices made after training (calibration).

    Writes ``checkpoint.pt`` (after every epoch, so an interrupted run can resume), then
    ``history.json`` and ``metrics.json`` into ``run_dir`` when given; a run's earlier
    ``calibration.json`` and detector there are deleted (they belong to other weights), and so
    are its ``history.json`` and ``metrics.json`` unless ``resume``. ``resume``: continue the
    interrupted run in ``run_dir`` from its last finished epoch (with the settings it started
    with). ``callbacks`` get each history row (a dict) at the end of every epoch, e.g. to draw
    live curves. ``progress``: a progress bar over the steps.
    Under ``torchrun`` it trains data-parallel (see ``cifar_lib.distributed``).

    >>> import torch
    >>> from cifar_lib import CifarSplit, configure, fit
    >>> images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    >>> data = CifarSplit(images, torch.arange(100) % 10)
    >>> result = fit(configure("original", epochs=1, batch_size=30, device="cpu"), data, data,
    ...              progress=False)
    >>> result.metrics["train_images"], len(result.history)  # 10 of the 100 held out
    (90, 1)
    """
    dist = distributed.setup(cfg.device)
    device = dist.device if dist.enabled else select_device(cfg.device)
    train, test = training_images(cfg, train), test.subset(cfg.test_subset)
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_dir / CHECKPOINT if run_dir is not None else None

    t = prepare(cfg, train, device, dist)
    if resume:
        restore(t, ckpt_path)
    if run_dir is not None and dist.is_main:
        # New weights make the folder's temperature and detector stale: fit them again. A new
        # run also makes an earlier run's history and metrics stale; until it finishes, the
        # folder holds its checkpoint alone, never a mix of the two runs.
        stale = (CALIBRATION, OOD_JSON, OOD_TENSORS) + (() if resume else (HISTORY, METRICS))
        for name in stale:
            (run_dir / name).unlink(missing_ok=True)
    t.ddp_model = dist.wrap(t.model)
    bar = tqdm(total=t.total_steps, initial=t.start_epoch * t.steps_per_epoch, unit="step",
               desc=f"train {cfg.model}", disable=not progress or not dist.is_main)
    try:
        for epoch in range(t.start_epoch, cfg.epochs):
            row = train_one_epoch(t, epoch, bar)
            if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row["test_loss"], row["test_acc"] = _evaluate(t, test)
            t.history.append(row)
            save_progress(t, ckpt_path, train.classes, epoch + 1)
            for callback in callbacks:
                callback(row)
    except KeyboardInterrupt:
        if ckpt_path is not None and dist.is_main:
            bar.write(f"Interrupted. The last finished epoch is saved in {ckpt_path}; "
                      f"continue with resume=True (command line: --resume).")
        raise
    finally:
        bar.close()

    metrics = final_metrics(t, len(train), test)
    save_progress(t, ckpt_path, train.classes, cfg.epochs, final=True)
    if run_dir is not None and dist.is_main:
        write_json(run_dir / HISTORY, t.history)
        write_json(run_dir / METRICS, metrics)
    dist.close()
    return FitResult(t.model.eval(), t.history, metrics)


def load_finished(cfg: TrainConfig, run_dir: str | Path) -> FitResult | None:
    """The finished run in ``run_dir`` as ``fit`` returned it (model on the CPU, in eval mode;
    history; metrics), when it was trained with exactly ``cfg``; None otherwise (no run, an
    unfinished one, or other settings). Lets a lesson run again without training again."""
    run_dir = Path(run_dir)
    paths = [run_dir / name for name in (CHECKPOINT, HISTORY, METRICS)]
    if not all(p.is_file() for p in paths):
        return None
    ckpt = load_checkpoint(paths[0])
    if "optimizer" in ckpt:  # resume state left in: the run did not finish
        return None
    same = json.loads(json.dumps(ckpt.get("config", {}))) == json.loads(json.dumps(cfg.to_dict()))
    if not same:
        return None
    model = build_model(ckpt["model"], **ckpt["model_kwargs"])
    load_weights(model, ckpt, model_name=cfg.model)
    return FitResult(model.eval(), read_json(paths[1]), read_json(paths[2]))


def final_metrics(t: Training, n_train: int, test: CifarSplit) -> dict:
    """The run's summary: model, size, device, precision, test loss/accuracy (and with TTA).

    The plain images are evaluated once: as TTA's first view when there is TTA, else on their
    own, unless the last epoch's evaluation already did it on these very weights."""
    cfg, history = t.cfg, t.history
    last = history[-1] if history else {}
    tta = None
    if "test_acc" in last:
        plain = last["test_loss"], last["test_acc"]
        if cfg.tta_level:
            tta = _evaluate(t, test, cfg.tta_level)
    elif cfg.tta_level:
        tta, plain = _evaluate(t, test, cfg.tta_level, with_plain=True)
    else:
        plain = _evaluate(t, test)
    seconds = sum(h["seconds"] for h in history)
    metrics = {"model": cfg.model, "parameters": count_parameters(t.model), "epochs": cfg.epochs,
               "seed": cfg.seed, "device": str(t.device), "world_size": t.dist.world_size,
               "precision": precision_name(t.amp_dtype),
               "train_images": n_train, "test_images": len(test), "test_loss": plain[0],
               "test_acc": plain[1], "train_seconds": last.get("train_seconds", 0.0),
               "images_per_second": sum(h["images_per_second"] * h["seconds"] for h in history)
               / seconds if seconds else 0.0,
               "tta_level": cfg.tta_level}
    if tta is not None:
        metrics["test_loss_tta"], metrics["test_acc_tta"] = tta
    return metrics
