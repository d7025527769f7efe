"""Benchmarks, one module each, all run the same way: ``python -m cifar_lib bench NAME ...``.

- ``data``: the input pipeline, ours against the seed's torchvision ``DataLoader``.
- ``train``: the fast recipe's accuracy and time over seeds, and the time-to-64% race.
- ``inference``: inference throughput and latency per batch size, CPU and GPU.
- ``throughput``: training throughput of both recipes on the CPU and on each GPU present.

Each module has ``add_arguments(parser)`` and ``main(args)``; each prints a markdown table and
writes one JSON record with ``records.write_record`` (numbers, command, machine, versions, date).
"""
from . import data, inference, throughput, train

BENCHMARKS = {"data": data, "train": train, "inference": inference, "throughput": throughput}
