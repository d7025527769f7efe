"""Data-parallel training under ``torchrun``; a no-op context in a single process.

``torchrun --standalone --nproc-per-node=N -m cifar_lib train ...`` starts N copies of the same
command; each sees RANK, LOCAL_RANK and WORLD_SIZE in its environment. ``setup`` turns that into a
``Context``: one process group (NCCL between GPUs, Gloo on CPUs), the device of this process,
and the few collective operations ``fit`` needs. Without torchrun (WORLD_SIZE absent or 1) the
context does nothing, so the same ``fit`` serves notebooks and clusters.

Choices, and why:

- Sharding (``BatchIterator(shard=(rank, world))``): every process draws the same shuffled order
  and takes positions rank, rank + N, ...; so batch k of the N processes together is exactly
  batch k of one process with an N times larger batch, and the gradient DDP averages is that
  batch's gradient. ``--batch-size`` is per process: the global batch is N × batch size.
- BatchNorm: each process normalises with its own batch's statistics (plain BatchNorm, no
  SyncBatchNorm). SyncBatchNorm works only on GPUs and adds two all-reduces per layer and step;
  per-process statistics over a few hundred images are as good (a "ghost batch norm"). The
  running statistics are rank 0's: DDP broadcasts rank 0's buffers before every forward (its
  default, ``broadcast_buffers=True``) and ``evaluate`` does so once more, so every process
  evaluates, and rank 0 saves, the same model.
- Evaluation: each process evaluates a contiguous slice of the test set; loss sums, correct
  counts and sizes are summed over processes, so the accuracy is over the full test set.
- Failures: a process that raises exits non-zero, and torchrun then stops the others (they
  would otherwise wait in their next collective). As a backstop for a process that hangs rather
  than dies, collectives time out after ``$CIFAR_LIB_DIST_TIMEOUT`` seconds (default 300).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

from .device import DeviceError, select_device

TIMEOUT_ENV = "CIFAR_LIB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300
_created_group = False  # setup() started the process group, so close() ends it


@dataclass
class Context:
    """Where this process stands: rank, world size, its device; single-process by default."""
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model to train: wrapped in DistributedDataParallel when data-parallel."""
        return model

    def mean(self, value: float) -> float:
        """The mean of ``value`` over all processes."""
        return value

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over all processes (a new tensor)."""
        return tensor.clone()

    def evaluate(self, model, split, **kwargs):
        """``inference.loss_and_accuracy(model, split, **kwargs)`` over the whole ``split``
        (with ``with_plain=True``: the TTA pair, then the plain pair)."""
        from .inference import loss_and_accuracy
        return loss_and_accuracy(model, split, **kwargs)

    def close(self) -> None:
        """Tear down the process group (if this context created it)."""


@dataclass
class DataParallelContext(Context):
    """One process of a torchrun job; the process group is initialised."""

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # Building DDP broadcasts rank 0's weights and buffers, so all processes start equal.
        # It also fixes the set of parameters that must get a gradient at every step: when fit
        # freezes the whitening bias it wraps again (find_unused_parameters=True would cost a
        # search of the autograd graph at every step instead). Left at its default,
        # broadcast_buffers=True copies rank 0's BatchNorm running statistics before each forward.
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, output_device=ids[0] if ids else None)

    def mean(self, value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.item() / self.world_size

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    def evaluate(self, model, split, **kwargs):
        from .checkpoint import unwrap
        from .data import CifarSplit
        from .inference import loss_and_accuracy
        plain = unwrap(model)
        # After the last training step each process's BatchNorm running statistics hold its own
        # batch: make them rank 0's, the ones the checkpoint saves, so all evaluate one model.
        for buffer in plain.buffers():
            torch.distributed.broadcast(buffer, src=0)
        n = len(split)
        lo, hi = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        part = CifarSplit(split.images[lo:hi], split.labels[lo:hi], split.classes)
        both = kwargs.get("with_plain", False)  # then (TTA pair, plain pair)
        if len(part):
            pairs = loss_and_accuracy(plain, part, **kwargs)
            pairs = pairs if both else (pairs,)
        else:  # fewer test images than processes: this one adds nothing
            pairs = ((0.0, 0.0),) * (2 if both else 1)
        # Sums, not means: slices may differ in size by one image.
        totals = torch.tensor([[loss * len(part), round(acc * len(part)), len(part)]
                               for loss, acc in pairs], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(totals)
        out = tuple((loss_sum / count, correct / count) if count else (float("nan"),) * 2
                    for loss_sum, correct, count in totals.tolist())
        return out if both else out[0]

    def close(self) -> None:
        global _created_group
        # Only on success: after an error the process just exits. A graceful NCCL teardown could
        # wait on collectives the failed peers never join; torchrun stops the job anyway.
        if _created_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        _created_group = False


def _device(requested: str) -> torch.device:
    """This process's device: the GPU of its LOCAL_RANK, or the CPU."""
    name = "auto" if requested is None else str(requested)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"  # no MPS: no collectives there
    device = select_device(name)  # a clear DeviceError for e.g. cuda on a machine without GPU
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"data-parallel training runs on CUDA GPUs (NCCL) or on CPUs (Gloo), "
                          f"not on {name!r}: use --device cuda or --device cpu")
    if device.index is not None:
        raise DeviceError(f"under torchrun each process uses the GPU numbered by its LOCAL_RANK; "
                          f"use --device cuda, not {name!r} (pick GPUs with CUDA_VISIBLE_DEVICES)")
    local_rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= count:
        raise DeviceError(f"process with LOCAL_RANK {local_rank} has no GPU: this machine has "
                          f"{count}; start at most --nproc-per-node={count} processes per machine")
    return torch.device("cuda", local_rank)


def timeout() -> timedelta:
    """How long a collective may wait for the other processes before failing."""
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def setup(device: str = "auto") -> Context:
    """The context for this process (torchrun sets WORLD_SIZE; absent or 1 means one process).

    Under torchrun: check ``device``, pin this process to its GPU and initialise the process
    group (NCCL on GPUs, Gloo on CPUs), unless the caller already did.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    global _created_group
    dev = _device(device)
    dist = torch.distributed
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # before NCCL starts, or every rank would use GPU 0
            dist.init_process_group("nccl", timeout=timeout(), device_id=dev)
        else:
            dist.init_process_group("gloo", timeout=timeout())
        _created_group = True
    return DataParallelContext(enabled=True, rank=dist.get_rank(), world_size=dist.get_world_size(),
                               device=dev)


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a torchrun job: the one that prints and saves."""
    return int(os.environ.get("RANK", "0")) == 0
