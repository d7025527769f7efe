"""Data-parallel training under ``torchrun``; a no-op context in a single process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


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
        return model

    def mean(self, value: float) -> float:
        return value

    def evaluate(self, fn, model, split, cfg, **kwargs):
        return fn(model, split, cfg, **kwargs)


def setup(device: str = "auto") -> Context:
    """The context for this process (torchrun sets WORLD_SIZE; absent means one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise NotImplementedError("data-parallel training is not available yet")
    return Context()


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a torchrun job: the one that prints and saves."""
    return int(os.environ.get("RANK", "0")) == 0
