"""Benchmarks, one module each, all run the same way: ``python -m cifar_lib bench NAME ...``.

- ``ablation`` (ablate.py): a recipe with each trick removed in turn, over seeds.
- ``data`` (pipeline.py): the input pipeline, ours against the original notebook's
  torchvision ``DataLoader``.
- ``train`` (race.py): ``fast`` against the airbench94 anchor over seeds, side by side.
- ``time-to-64`` (time_to_64.py): ``race64`` against the original notebook's pipeline, to 64%.
- ``inference`` (inference_speed.py): inference throughput and latency per batch size.
- ``throughput`` (throughput.py): training images/s of recipes on the CPU and on each GPU.
- ``robustness`` (corrupt.py): accuracy under common corruptions, model by model.
- ``breakdown`` (breakdown.py): where a training step's time goes, from torch.profiler.
- ``allocator`` (allocator.py): CPU training steps with malloc as it is and keeping freed
  memory (``device.keep_freed_memory``), side by side.
- ``open-set`` (open_set.py): "none of these" scores (``cifar_lib.ood``) against unknown
  classes, corrupted and synthetic images and an out-of-class photo.
- ``report`` (report.py): not a measurement: rebuilds the docs' result tables from the records.

Benchmarks are leaves: they call the library (``cifar_lib.speed``, ``cifar_lib.ablation``,
``cifar_lib.robustness`` ...) and write records; nothing in the library or the lessons imports
them. Each module has ``add_arguments(parser)`` and ``main(args)``; each prints a markdown table
and writes one JSON record with ``records.write_record`` (numbers, command, machine, versions,
date).
"""
from . import (
              ablate,
              allocator,
              breakdown,
              corrupt,
              inference_speed,
              open_set,
              pipeline,
              race,
              report,
              throughput,
              time_to_64,
)

# Where a smoke test's record goes (--quick, or bench data's --limit) when no --out is given:
# out of the way of the committed records that the docs' tables are built from.
SMOKE_DIR = "build/bench"

BENCHMARKS = {"ablation": ablate, "data": pipeline, "train": race,
              "inference": inference_speed, "throughput": throughput, "robustness": corrupt,
              "breakdown": breakdown, "report": report, "open-set": open_set,
              "allocator": allocator, "time-to-64": time_to_64}
