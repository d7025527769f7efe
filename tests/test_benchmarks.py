"""The benchmark commands' structure, in their quick modes (never their timings)."""
import json

import pytest

from cifar_lib import bench_data, bench_train
from cifar_lib.records import markdown_table

pytestmark = pytest.mark.real_data


def test_time_to_finds_the_first_epoch_reaching_the_target():
    history = [{"train_seconds": 10, "test_acc": 0.5}, {"train_seconds": 20, "test_acc": 0.65},
               {"train_seconds": 30, "test_acc": 0.7}]
    assert bench_train.time_to(history) == 20
    assert bench_train.time_to(history[:1]) is None


def test_data_pipeline_benchmark_rows_and_record(cifar10, tmp_path):
    out = tmp_path / "data.json"
    assert bench_data.main(["--limit", "1024", "--workers", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "data_pipeline" and record["machine"]["torch"]
    pipelines = [r["pipeline"] for r in record["rows"]]
    assert pipelines[0].startswith("torchvision DataLoader") and len(pipelines) == 4
    assert all(r["images_per_second"] > 0 for r in record["rows"])
    assert markdown_table(record["rows"]).count("\n") == 5


def test_train_benchmark_quick_record(cifar10, tmp_path):
    out = tmp_path / "train.json"
    assert bench_train.main(["--quick", "--seeds", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    for key in ("recipe", "device", "seeds", "test_acc", "seconds", "images_per_second",
                "time_to_64", "date", "machine"):
        assert key in record, key
    assert record["seeds"] == [0] and len(record["test_acc"]) == len(record["seconds"]) == 1
    assert 0 <= record["test_acc"][0] <= 100
    assert set(record["time_to_64"]) == {"fast", "seed", "speedup"}
    assert record["machine"]["torch_threads"] >= 1 and record["machine"]["cpu"]
