"""The training-throughput benchmark: its rows, record and clock discipline (never its timings)."""
from __future__ import annotations

import contextlib
import io
import json
import shlex

import pytest
import torch

from cifar_lib import plots
from cifar_lib.speed import clock as timing
from cifar_lib.speed import steps as tp
from cifar_lib.cli import main
from cifar_lib.device import cpu_model


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def gpus() -> list[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else ["cuda"]


@pytest.fixture(scope="module")
def quick_record(one_thread, cifar_folder, tmp_path_factory):
    """One quick run on the synthetic CIFAR folder (200 training images), shared by the tests:
    (argv, the JSON record, what it printed)."""
    tmp = tmp_path_factory.mktemp("throughput")
    root = cifar_folder(tmp / "data")
    out = tmp / "throughput.json"
    argv = ["bench", "throughput", "--quick", "--recipes", "original", "tiny",
            "--steps", "2", "--warmup", "1", "--data-root", str(root), "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return argv, json.loads(out.read_text()), printed.getvalue()


def test_quick_record_has_a_row_per_recipe_and_device(quick_record):
    argv, record, printed = quick_record
    assert record["benchmark"] == "train_throughput"
    assert record["command"] == "python -m cifar_lib " + shlex.join(argv)
    assert record["settings"]["recipes"] == ["original", "tiny"]
    assert record["machine"]["cpu"] and set(record["machine"]["cpu_flags"]) == \
        {"native_bf16", "avx512f", "avx2"}
    rows = record["rows"]
    assert all(tuple(r) == tp.ROW_KEYS for r in rows)
    assert [(r["recipe"], r["device"]) for r in rows] == \
        [(recipe, d) for recipe in ("original", "tiny") for d in ["cpu", *gpus()]]
    assert "| recipe | device |" in printed and "record written to" in printed


def test_cpu_rows_are_measured(quick_record):
    _, record, _ = quick_record
    cpu = {r["recipe"]: r for r in record["rows"] if r["device"] == "cpu"}
    for r in cpu.values():
        assert r["status"] == "ok" and r["device_name"] == cpu_model()
        assert (r["steps"], r["warmup"]) == (2, 1)
        assert r["images_per_s"] > 0 and r["seconds"] > 0
        assert r["seconds_per_step"] == pytest.approx(r["seconds"] / 2)
        assert r["images_per_s"] == pytest.approx(2 * r["batch_size"] / r["seconds"])
        assert r["speedup_vs_cpu"] == 1.0
        assert r["precision"] in ("fp32", "bfloat16")
    # Built as fit builds them: the original recipe in NCHW, the fast ones channels-last.
    assert cpu["original"]["channels_last"] is False and cpu["tiny"]["channels_last"] is True
    assert cpu["original"]["model"] == "simple_cnn" and cpu["tiny"]["model"] == "airbench"
    assert cpu["original"]["batch_size"] == 128  # the synthetic set has 200 training images
    assert all(r["crop_size"] is None and r["crop_images_per_s"] is None for r in cpu.values())


def test_a_recipe_with_crop_epochs_is_timed_on_its_crops_too(monkeypatch, synthetic_root):
    real = tp.configure
    monkeypatch.setattr(tp, "configure", lambda name, quick, device: real(
        "fast", quick=True, device=device).replace(epochs=2, crop_epochs=1, crop_size=20,
                                                   batch_size=50))
    shapes = []
    original_step = tp.train_step
    monkeypatch.setattr(tp, "train_step", lambda t, x, y, i: (shapes.append(tuple(x.shape[2:])),
                                                              original_step(t, x, y, i))[1])
    [row] = tp.run(["fast"], devices="cpu", steps=2, warmup=1, root=synthetic_root, quick=True)
    assert row["crop_size"] == 20 and row["crop_images_per_s"] > 0 and row["images_per_s"] > 0
    assert shapes == [(32, 32)] * 3 + [(20, 20)] * 3  # whole images, then the crops


def test_gpu_rows_say_there_is_no_gpu(quick_record):
    _, record, _ = quick_record
    gpu = [r for r in record["rows"] if r["device"].startswith("cuda")]
    assert len(gpu) == 2 * len(gpus())
    if torch.cuda.is_available():
        assert all(r["status"] == "ok" and r["speedup_vs_cpu"] > 0 for r in gpu)
    else:
        assert all(r["status"] == tp.NO_GPU and r["images_per_s"] is None
                   and r["speedup_vs_cpu"] is None for r in gpu)


def test_default_options():
    from cifar_lib.cli import build_parser
    args = build_parser().parse_args(["bench", "throughput"])
    assert args.recipes == ["original", "fast"] and args.devices == ["all"]
    assert args.out == "benchmarks/results/train_throughput.json"


def test_bad_steps_are_a_user_error(synthetic_root, capsys):
    assert main(["bench", "throughput", "--steps", "0", "--data-root", str(synthetic_root),
                 "--out", "unused.json"]) == 1
    assert "steps must be ≥ 1" in capsys.readouterr().err


def test_time_steps_synchronises_a_gpu_before_each_clock_reading(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    clock = iter([10.0, 12.5])
    monkeypatch.setattr(timing, "_now", lambda: events.append("clock") or next(clock))
    batches = [(torch.zeros(2, 3), torch.zeros(2))] * 2  # fewer than needed: epochs repeat
    seconds = tp.time_steps(lambda x, y, i: events.append(i), batches, steps=3, warmup=2,
                            device=torch.device("cuda"))
    assert seconds == 2.5
    assert events == [0, 1, "sync", "clock", 2, 3, 4, "sync", "clock"]


def test_time_steps_does_not_synchronise_a_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    assert tp.time_steps(lambda x, y, i: None, [(1, 2)], steps=1, warmup=0, device="cpu") >= 0
    assert calls == []
    with pytest.raises(ValueError, match="steps must be"):
        tp.time_steps(lambda x, y, i: None, [(1, 2)], steps=0, warmup=0, device="cpu")
    with pytest.raises(ValueError, match="no batches"):
        tp.time_steps(lambda x, y, i: None, [], steps=1, warmup=0, device="cpu")


def test_devices_for(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert tp.devices_for("all") == ["cpu", "cuda"]
    assert tp.devices_for("auto") == ["cpu"]  # 'auto' means what it means everywhere: one device
    assert tp.devices_for(["cpu", "cpu", "cuda:1"]) == ["cpu", "cuda:1"]
    with pytest.raises(ValueError, match="unknown benchmark device"):
        tp.devices_for("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert tp.devices_for(["all"]) == ["cpu", "cuda:0", "cuda:1"]
    assert tp.devices_for("auto") == ["cuda"]


def test_speedup_is_against_the_same_recipes_cpu_row():
    rows = [tp._row(recipe="a", device="cpu", status="ok", images_per_s=100.0),
            tp._row(recipe="a", device="cuda:0", status="ok", images_per_s=2500.0),
            tp._row(recipe="b", device="cpu", status="ok", images_per_s=10.0),
            tp._row(recipe="b", device="cuda", status=tp.NO_GPU)]
    tp._add_speedups(rows)
    assert [r["speedup_vs_cpu"] for r in rows] == [1.0, 25.0, 1.0, None]


@pytest.mark.skipif(not hasattr(plots, "plot_training_throughput"),
                    reason="plots.plot_training_throughput not added yet")
def test_plot(quick_record):
    from matplotlib.figure import Figure
    rows = quick_record[1]["rows"]
    fig = plots.plot_training_throughput(rows)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    measured = [r for r in rows if r["status"] == "ok"]
    assert len(ax.patches) == len(measured) and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["original", "tiny"]
    if not torch.cuda.is_available():
        assert sum(t.get_text() == "no GPU" for t in ax.texts) == 2
