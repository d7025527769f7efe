"""The inference benchmark's structure on a tiny model with quick settings."""
from __future__ import annotations

import json
import shlex

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cifar_lib import plots
from cifar_lib.bench.inference_speed import COLUMNS
from cifar_lib.bench.records import write_record
from cifar_lib.records import markdown_table
from cifar_lib.speed import latency as bi
from cifar_lib.checkpoint import save_checkpoint
from cifar_lib.cli import main
from cifar_lib.data import CLASSES
from cifar_lib.models import build_model

# One thread: on a machine whose cores are busy, two OpenMP threads can be 50× slower.
QUICK = dict(warmup=1, min_run_time=0.01, min_repeats=3, threads=1)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


@pytest.fixture(scope="module")
def rows():
    return bi.benchmark_inference(tiny_model(), batch_sizes=(1, 4), device="all", **QUICK)


def test_rows_have_the_expected_shape(rows):
    assert all(tuple(r) == bi.ROW_KEYS for r in rows)
    cpu = [r for r in rows if r["device"] == "cpu"]
    variants = [v for v in bi.VARIANTS if v != "compile"]  # compile is opt-in
    assert {(r["variant"], r["batch_size"]) for r in cpu if r["method"] == bi.TIMER_METHOD} == \
        {(v, b) for v in variants for b in (1, 4)}
    assert all(r["status"] == "ok" and r["threads"] == 1 for r in cpu)


def test_timer_rows_are_consistent(rows):
    for r in rows:
        if r["device"] != "cpu" or r["method"] != bi.TIMER_METHOD:
            continue
        assert 0 < r["q25_ms"] <= r["median_ms"] <= r["q75_ms"]
        assert r["iqr_ms"] == pytest.approx(r["q75_ms"] - r["q25_ms"])
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / r["median_ms"] * 1e3)
        assert r["images_per_s_low"] <= r["images_per_s"] <= r["images_per_s_high"]
        assert r["measurements"] >= 3 and r["speedup"] > 0
        if r["variant"] == bi.BASELINE:
            assert r["speedup"] == 1.0
    dtypes = {r["variant"]: r["dtype"] for r in rows if r["device"] == "cpu"}
    assert dtypes["autocast"] == "bfloat16" and dtypes["no_grad"] == "fp32"


def test_original_method_rows(rows):
    seed = [r for r in rows if r["device"] == "cpu" and r["method"] == bi.ORIGINAL_METHOD]
    assert [r["batch_size"] for r in seed] == [1, 4]
    assert all(r["measurements"] == 1 and r["iqr_ms"] is None and r["median_ms"] >= 0
               for r in seed)


def test_gpu_rows_say_there_is_no_gpu(rows):
    gpu = [r for r in rows if r["device"] == "cuda"]
    assert gpu, "device='all' must include the GPU rows"
    if torch.cuda.is_available():
        assert all(r["status"] == "ok" for r in gpu)
    else:
        assert all(r["status"] == bi.NO_GPU and r["images_per_s"] is None for r in gpu)


@pytest.mark.parametrize("native", [True, False])
def test_emulated_bf16_is_timed_on_small_batches_only(monkeypatch, native):
    # without native bf16, autocast is many times slower than fp32: the large batches would
    # take most of lesson 02's time, so they get a row that says why they were not timed
    monkeypatch.setattr(bi, "cpu_has_native_bf16", lambda: native)
    sizes = (1, bi.EMULATED_BF16_MAX_BATCH, bi.EMULATED_BF16_MAX_BATCH + 1)
    rows = bi.benchmark_inference(tiny_model(), batch_sizes=sizes, device="cpu",
                                  variants=["no_grad", "autocast"], original_method=False,
                                  **QUICK)
    status = {(r["variant"], r["batch_size"]): r["status"] for r in rows}
    assert status == {**{("no_grad", b): "ok" for b in sizes},
                      ("autocast", 1): "ok", ("autocast", sizes[1]): "ok",
                      ("autocast", sizes[2]): "ok" if native else bi.EMULATED_BF16}
    assert all(tuple(r) == bi.ROW_KEYS and r["dtype"] for r in rows)


def test_compile_failure_is_recorded_not_raised(monkeypatch):
    def broken_compile(model, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong traceback ...")
    monkeypatch.setattr(torch, "compile", broken_compile)
    threads = torch.get_num_threads()
    rows = bi.benchmark_inference(tiny_model(), batch_sizes=(1, 2), device="cpu",
                                  variants=["no_grad"], compile=True, original_method=False, **QUICK)
    comp = [r for r in rows if r["variant"] == "compile"]
    assert [r["batch_size"] for r in comp] == [1, 2]
    assert all(r["status"] == "error: RuntimeError: no C++ compiler found" for r in comp)
    assert [r["status"] for r in rows if r["variant"] == "no_grad"] == ["ok", "ok"]
    assert torch.get_num_threads() == threads  # QUICK's threads=1 was undone


def test_original_method_synchronises_around_its_one_call(monkeypatch):
    # On a GPU a call returns once its kernels are queued: the original's single-call timing must
    # wait for them (and for the input's copy) on both sides of the call.
    events = []
    monkeypatch.setattr(bi, "sync", lambda device: events.append(("sync", str(device))))

    class Spy(nn.Module):
        def forward(self, x):
            events.append(("call", len(x)))
            return x.mean((2, 3))

    bi.benchmark_inference(Spy(), batch_sizes=(1, 3), device="cpu", variants=["no_grad"],
                           original_method=True, **QUICK)
    seed_part = events[:6]
    assert seed_part == [("sync", "cpu"), ("call", 1), ("sync", "cpu"),
                         ("sync", "cpu"), ("call", 3), ("sync", "cpu")]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown variant"):
        bi.benchmark_inference(tiny_model(), variants=["turbo"])
    with pytest.raises(ValueError, match="batch sizes"):
        bi.parse_batch_sizes("1,x")
    assert bi.parse_batch_sizes("1, 8,32") == [1, 8, 32]


def test_table_record_and_plot(rows, tmp_path):
    table = markdown_table(rows, COLUMNS).splitlines()
    assert len(table) == len(rows) + 2
    assert table[0] == ("| device | threads | variant | dtype | method | batch | median ms [IQR] "
                        "| images/s | speedup | status |")
    assert any(bi.NO_GPU in line for line in table) != torch.cuda.is_available()
    timed = next(r for r in rows if r["method"] == bi.TIMER_METHOD and r["status"] == "ok")
    cells = markdown_table([timed], COLUMNS).splitlines()[2].split(" | ")
    assert cells[6] == f"{timed['median_ms']:.3g} [{timed['iqr_ms']:.2g}]"
    assert cells[7] == f"{timed['images_per_s']:,.0f}" and cells[8] == f"{timed['speedup']:.2f}"
    record = write_record(tmp_path / "bench.json", rows, command="test", model={"name": "x"})
    text = (tmp_path / "bench.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)
    assert saved == json.loads(json.dumps(record))
    assert saved["command"] == "test" and len(saved["rows"]) == len(rows)
    assert saved["machine"]["torch"] == torch.__version__
    assert saved["machine"]["torch_threads"] == torch.get_num_threads() and saved["machine"]["cpu"]
    assert saved["date"][:2] == "20"
    fig = plots.plot_throughput(rows)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == len(bi.VARIANTS)  # 5 variants + the original's method


def test_cli_bench(tmp_path, capsys, monkeypatch):
    save_checkpoint(tmp_path / "checkpoint.pt", build_model("simple_cnn"), model_name="simple_cnn",
                    model_kwargs={}, classes=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = tmp_path / "b.json"
    argv = ["bench", "inference", "--run-dir", str(tmp_path), "--batch-sizes", "1,2",
            "--device", "cpu", "--quick", "--min-run-time", "0.01", "--threads", "1",
            "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "inference"
    assert saved["command"] == "python -m cifar_lib " + shlex.join(argv)
    assert all(tuple(r) == bi.ROW_KEYS for r in saved["rows"])
    assert {r["batch_size"] for r in saved["rows"]} == {1, 2}
    assert {r["device"] for r in saved["rows"]} == {"cpu"}
    assert saved["model"]["parameters"] == 620_362 and saved["model"]["model"] == "simple_cnn"
    assert saved["settings"]["batch_sizes"] == "1,2" and "command_line" not in saved["settings"]
    assert "| device |" in capsys.readouterr().out
    # Without --out a smoke test's record goes into build/bench (a measurement's: the run folder)
    monkeypatch.chdir(tmp_path)
    assert main(argv[:-2]) == 0 and (tmp_path / "build/bench/inference.json").is_file()
    assert not (tmp_path / "bench_inference.json").exists()
    capsys.readouterr()
    assert main(["bench", "inference", "--run-dir", str(tmp_path), "--batch-sizes", "0"]) == 1
    assert "batch sizes must be positive" in capsys.readouterr().err


def test_all_times_every_device_and_auto_the_one_training_would_use(monkeypatch):
    from cifar_lib.speed.latency import _devices
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _devices("all") == ["cpu", "cuda"]  # the CUDA rows then say there is no GPU
    assert _devices("auto") == ["cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _devices("auto") == ["cuda"]
    with pytest.raises(ValueError, match="'all', 'auto'"):
        _devices("tpu")
