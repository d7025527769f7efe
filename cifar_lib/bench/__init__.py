"""Benchmarks, one module each, all run the same way: ``python -m cifar_lib bench NAME ...``.

- ``ablation``: airbench94 with each trick removed in turn, at one fixed budget.
- ``data``: the input pipeline, ours against the seed's torchvision ``DataLoader``.
- ``train``: the fast recipe against the airbench94 anchor over seeds, and the time-to-64%
  race.
- ``inference``: inference throughput and latency per batch size, CPU and GPU.
- ``throughput``: training throughput of both recipes on the CPU and on each GPU present.
- ``robustness``: accuracy under common corruptions (CIFAR-10-C style), model by model.
- ``report``: measures nothing; rebuilds the docs' result tables from the records.

Each module has ``add_arguments(parser)`` and ``main(args)``; each prints a markdown table and
writes one JSON record with ``records.write_record`` (numbers, command, machine, versions, date).
"""
from . import ablation, data, inference, report, robustness, throughput, train

BENCHMARKS = {"ablation": ablation, "data": data, "train": train, "inference": inference, "throughput": throughput,
              "robustness": robustness, "report": report}
