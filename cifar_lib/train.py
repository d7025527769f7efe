"""Training: one ``fit`` for every recipe, with progress, history, checkpoints and resume."""
from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import (CHECKPOINT, HISTORY, METRICS, CheckpointError, load_checkpoint,
                         load_weights, save_checkpoint, unwrap, write_json)
from .data import CifarSplit
from .device import autocast_dtype, select_device
from .inference import accuracy, autocast, predict_logits
from .loader import HALF, BatchIterator
from .models import AirbenchNet, build_model, count_parameters


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the seed notebook's recipe."""
    model: str = "simple_cnn"            # registry name (see cifar_lib.models.MODELS)
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 2
    batch_size: int = 128
    optimizer: str = "adam"              # "adam" or "sgd" (Nesterov momentum)
    lr: float = 1e-3                     # peak learning rate, for the mean loss over a batch
    momentum: float = 0.9                # SGD only
    weight_decay: float = 0.0            # PyTorch's coupled L2, as the optimiser takes it
    bias_lr_scale: float = 1.0           # BatchNorm and whitening biases learn this much faster
    schedule: str = "constant"           # "constant" or "triangle" (linear warm-up then decay)
    lr_start: float = 0.2                # triangle: lr multiplier at step 0 ...
    lr_peak_at: float = 0.23             # ... rising to 1 at this fraction of training ...
    lr_end: float = 0.07                 # ... and falling to this at the end
    label_smoothing: float = 0.0
    lookahead: bool = False              # average weights every 5 steps, copy back (airbench)
    whiten_bias_epochs: int = 0          # whitening-layer bias trains only this many epochs
    flip: str | None = None              # None, "random" or "alternating"
    translate: int = 0                   # max random shift in pixels (reflect-filled)
    mean: tuple = HALF[0]
    std: tuple = HALF[1]
    tta_level: int = 0                   # test-time augmentation for the final evaluation
    precision: str = "gpu"               # "gpu" (mixed on GPUs only), "auto" (also CPUs with native
                                         # bf16), "bf16", "fp16", "fp32" (see device.autocast_dtype)
    channels_last: bool = False
    seed: int = 0
    device: str = "auto"
    train_subset: int | None = None      # use only the first N training images (quick runs)
    test_subset: int | None = None
    eval_every: int = 1                  # evaluate on the test set every N epochs (0: only at end)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message suggests a fix."""


@dataclass
class FitResult:
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


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, or Nesterov SGD with faster-learning biases (BatchNorm and whitening)."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen weights stay out
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use 'adam' or 'sgd'")
    bias_ids = {id(m.bias) for m in model.modules()
                if isinstance(m, nn.BatchNorm2d) and m.bias is not None}
    whiten = _whiten_bias(model)
    if whiten is not None:
        bias_ids.add(id(whiten))
    biases = [p for p in params if id(p) in bias_ids]
    others = [p for p in params if id(p) not in bias_ids]
    bias_lr = cfg.lr * cfg.bias_lr_scale
    # Decay per step is lr × weight_decay; keep it equal for biases despite their larger lr.
    groups = [dict(params=others, lr=cfg.lr, weight_decay=cfg.weight_decay),
              dict(params=biases, lr=bias_lr, weight_decay=cfg.weight_decay * cfg.lr / bias_lr)]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=True)


def _whiten_bias(model: nn.Module):
    model = unwrap(model)
    return model.whitening.bias if isinstance(model, AirbenchNet) else None


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


def _check_finite(loss: float, epoch: int, step: int, cfg: TrainConfig) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss became {loss} at epoch {epoch + 1}, step {step}: training diverged. "
            f"Lower the learning rate (lr={cfg.lr}) or use precision='fp32'.")


def evaluate(model: nn.Module, split: CifarSplit, cfg: TrainConfig, tta_level: int = 0,
             amp_dtype=None) -> tuple[float, float]:
    """(loss, accuracy in 0..1) of ``model`` on ``split``."""
    logits = predict_logits(model, split.images, cfg.mean, cfg.std, tta_level=tta_level,
                            amp_dtype=amp_dtype)
    return F.cross_entropy(logits, split.labels).item(), accuracy(logits, split.labels)


def fit(cfg: TrainConfig, train: CifarSplit, test: CifarSplit, *, run_dir: str | Path | None = None,
        resume: bool = False, callbacks: Iterable[Callable[[dict], None]] = (),
        progress: bool = True) -> FitResult:
    """Train ``cfg.model`` on ``train``, evaluating on ``test``.

    Writes ``checkpoint.pt`` (after every epoch, so an interrupted run can resume), then
    ``history.json`` and ``metrics.json`` into ``run_dir`` when given. ``callbacks`` get each
    history row (a dict) at the end of every epoch, e.g. to draw live curves.
    Under ``torchrun`` it trains data-parallel (see ``cifar_lib.distributed``).
    """
    dist = distributed.setup(cfg.device)
    device = dist.device if dist.enabled else select_device(cfg.device)
    train, test = train.subset(cfg.train_subset), test.subset(cfg.test_subset)
    amp_dtype = autocast_dtype(device, cfg.precision)
    run_dir = Path(run_dir) if run_dir is not None else None

    seed_everything(cfg.seed)
    model = build_model(cfg.model, **cfg.model_kwargs)
    if isinstance(model, AirbenchNet):
        from .loader import normalize
        model.whitening.init_from(normalize(train.images[:5000], cfg.mean, cfg.std))
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    lookahead = Lookahead(model) if cfg.lookahead else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loader = BatchIterator(train, cfg.batch_size, mean=cfg.mean, std=cfg.std, device=device,
                           shuffle=True, flip=cfg.flip, translate=cfg.translate, drop_last=True,
                           seed=cfg.seed, shard=(dist.rank, dist.world_size),
                           channels_last=cfg.channels_last)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(train)} training "
                         f"images per process: lower batch_size or use more data")
    total_steps = cfg.epochs * steps_per_epoch
    history: list[dict] = []
    start_epoch = 0

    ckpt_path = run_dir / CHECKPOINT if run_dir is not None else None
    if resume:
        start_epoch, history = _restore(ckpt_path, cfg, model, optimizer, lookahead, scaler)
    ddp_model = dist.wrap(model)

    def checkpoint(epoch_done: int, final: bool = False) -> None:
        if ckpt_path is None or not dist.is_main:
            return
        state = {} if final else dict(optimizer=optimizer.state_dict(),
                                      lookahead=lookahead.state if lookahead else None,
                                      rng=torch.get_rng_state(), scaler=scaler.state_dict())
        save_checkpoint(ckpt_path, model, model_name=cfg.model, model_kwargs=cfg.model_kwargs,
                        classes=train.classes, mean=cfg.mean, std=cfg.std, config=cfg.to_dict(),
                        epoch=epoch_done, history=history, **state)

    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, unit="step",
               desc=f"train {cfg.model}", disable=not progress or not dist.is_main)
    train_seconds = history[-1]["train_seconds"] if history else 0.0
    try:
        for epoch in range(start_epoch, cfg.epochs):
            loader.epoch = epoch
            whiten = _whiten_bias(model)
            if whiten is not None and whiten.requires_grad != (epoch < cfg.whiten_bias_epochs):
                whiten.requires_grad_(epoch < cfg.whiten_bias_epochs)
                ddp_model = dist.wrap(model)  # DDP must know which parameters get gradients
            ddp_model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for i, (x, y) in enumerate(loader):
                step = epoch * steps_per_epoch + i
                for group in optimizer.param_groups:
                    group["lr"] = group.get("base_lr", cfg.lr) * lr_multiplier(cfg, step, total_steps)
                with autocast(device, amp_dtype):
                    logits = ddp_model(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # fp16 only: scaled so small gradients survive
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                if lookahead is not None and (step + 1) % 5 == 0:
                    lookahead.update(model, Lookahead.decay(step + 1, total_steps))
                if i % 20 == 0 or i == steps_per_epoch - 1:  # a sync point: not every step
                    running = loss_sum.item() / seen
                    _check_finite(running, epoch, i, cfg)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{running:.3f}",
                                    acc=f"{correct.item() / seen:.3f}")
                bar.update(1)
            if lookahead is not None and epoch == cfg.epochs - 1:
                lookahead.update(model, 1.0)  # finish on the averaged weights
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            row = {"epoch": epoch + 1, "train_loss": dist.mean(loss_sum.item() / seen),
                   "train_acc": dist.mean(correct.item() / seen), "seconds": seconds,
                   "train_seconds": train_seconds,
                   "images_per_second": seen * dist.world_size / seconds,
                   "lr": optimizer.param_groups[0]["lr"]}
            if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row["test_loss"], row["test_acc"] = dist.evaluate(evaluate, model, test, cfg,
                                                                  amp_dtype=amp_dtype)
            history.append(row)
            checkpoint(epoch + 1)
            for callback in callbacks:
                callback(row)
    except KeyboardInterrupt:
        if ckpt_path is not None and dist.is_main:
            bar.write(f"Interrupted. The last finished epoch is saved in {ckpt_path}; "
                      f"continue with resume=True (command line: --resume).")
        raise
    finally:
        bar.close()

    metrics = _final_metrics(cfg, model, len(train), test, history, amp_dtype, device, dist)
    checkpoint(cfg.epochs, final=True)
    if run_dir is not None and dist.is_main:
        write_json(run_dir / HISTORY, history)
        write_json(run_dir / METRICS, metrics)
    dist.close()
    return FitResult(model, history, metrics)


def _restore(ckpt_path, cfg, model, optimizer, lookahead, scaler) -> tuple[int, list]:
    if ckpt_path is None:
        raise CheckpointError("resume=True needs run_dir: the folder of the run to continue")
    ckpt = load_checkpoint(ckpt_path)
    load_weights(model, ckpt, model_name=cfg.model)
    if "optimizer" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is a finished run ({ckpt['epoch']} epochs), "
                              f"nothing to resume; train into a new run folder")
    optimizer.load_state_dict(ckpt["optimizer"])
    if lookahead is not None:
        lookahead.state = ckpt["lookahead"]
    torch.set_rng_state(ckpt["rng"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt["epoch"], list(ckpt["history"])


def _final_metrics(cfg, model, n_train, test, history, amp_dtype, device, dist) -> dict:
    last = history[-1] if history else {}
    if "test_acc" in last:  # the last epoch was just evaluated on these very weights
        loss, acc = last["test_loss"], last["test_acc"]
    else:
        loss, acc = dist.evaluate(evaluate, model, test, cfg, amp_dtype=amp_dtype)
    seconds = sum(h["seconds"] for h in history)
    metrics = {"model": cfg.model, "parameters": count_parameters(model), "epochs": cfg.epochs,
               "seed": cfg.seed, "device": str(device), "world_size": dist.world_size,
               "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
               "train_images": n_train, "test_images": len(test), "test_loss": loss, "test_acc": acc,
               "train_seconds": last.get("train_seconds", 0.0),
               "images_per_second": sum(h["images_per_second"] * h["seconds"] for h in history)
               / seconds if seconds else 0.0,
               "tta_level": cfg.tta_level}
    if cfg.tta_level:
        metrics["test_loss_tta"], metrics["test_acc_tta"] = dist.evaluate(
            evaluate, model, test, cfg, tta_level=cfg.tta_level, amp_dtype=amp_dtype)
    return metrics
