"""Precision follows the card actually used (compute capability, not is_bf16_supported), the
memory layout the device, and a missing device is a clear DeviceError. GPUs are stubbed."""
from __future__ import annotations

import builtins
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_lib import device as dev
from cifar_lib.data import CifarSplit
from cifar_lib.device import (DeviceError, autocast_dtype, cpu_has_native_bf16, select_device,
                              use_channels_last)
from cifar_lib.recipes import configure
from cifar_lib.train import prepare

CUDA, MPS, CPU = torch.device("cuda"), torch.device("mps"), torch.device("cpu")

# ------------------------------------------------------------------------- precision on CUDA

CARDS = {"T4": (7, 5), "V100": (7, 0), "A100": (8, 0), "L4": (8, 9), "H100": (9, 0)}
EXPECTED = {"T4": torch.float16, "V100": torch.float16, "A100": torch.bfloat16,
            "L4": torch.bfloat16, "H100": torch.bfloat16}


@pytest.fixture
def card(monkeypatch):
    """Pretend a CUDA card of the given name is present; torch.cuda.is_bf16_supported says True
    for every one of them, as torch does (it counts emulated bf16 too)."""
    def use(name):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: CARDS[name])
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return use


@pytest.mark.parametrize("precision", ["auto", "gpu"])
@pytest.mark.parametrize("name", list(CARDS))
def test_mixed_precision_dtype_follows_compute_capability(card, name, precision):
    card(name)
    assert autocast_dtype(CUDA, precision) == EXPECTED[name]


def test_t4_gets_fp16_even_though_torch_says_bf16_is_supported(card):
    card("T4")
    assert torch.cuda.is_bf16_supported()  # the stub: what torch says on a real T4
    assert autocast_dtype(CUDA, "auto") == torch.float16


def test_capability_is_read_from_the_device_asked_about(monkeypatch):
    asked = []

    def capability(device=None):
        asked.append(device)
        return (8, 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    assert autocast_dtype(torch.device("cuda:1"), "auto") == torch.bfloat16
    assert asked == [torch.device("cuda:1")]


@pytest.mark.parametrize("name", ["T4", "H100"])
def test_forced_precisions_ignore_the_card(card, name):
    card(name)
    assert autocast_dtype(CUDA, "fp32") is None
    assert autocast_dtype(CUDA, "bf16") == torch.bfloat16
    assert autocast_dtype(CUDA, "fp16") == torch.float16


# ------------------------------------------------------------------------- precision elsewhere

def test_mps_is_fp32_unless_bf16_is_asked_for():
    assert autocast_dtype(MPS, "auto") is None
    assert autocast_dtype(MPS, "gpu") is None
    assert autocast_dtype(MPS, "bf16") == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_cpu_auto_uses_bf16_only_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_gpu_precision_is_always_fp32(monkeypatch, native):
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(CPU, "gpu") is None
    assert autocast_dtype(CPU, "fp32") is None


@pytest.mark.parametrize("precision", ["fp8", "float16", "", None])
def test_unknown_precision_is_a_value_error(precision):
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype(CPU, precision)


# ------------------------------------------------------------------------------ memory layout

@pytest.mark.parametrize("device, expected", [(CUDA, True), (CPU, True), (MPS, False)])
def test_channels_last_auto_follows_the_device(device, expected):
    assert use_channels_last(device, "auto") is expected


@pytest.mark.parametrize("device", [CUDA, CPU, MPS])
def test_channels_last_can_be_forced(device):
    assert use_channels_last(device, True) is True
    assert use_channels_last(device, False) is False


# --------------------------------------------------------------------------- device selection

@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)


def test_cuda_without_a_gpu_says_how_to_get_one_on_colab(no_gpu):
    with pytest.raises(DeviceError, match=r"no CUDA GPU.*--device cpu.*Colab.*Change runtime type"):
        select_device("cuda")


def test_mps_without_mps_is_a_device_error(no_gpu):
    with pytest.raises(DeviceError, match="MPS is not available"):
        select_device("mps")


def test_auto_without_accelerators_is_the_cpu(no_gpu):
    assert select_device("auto") == CPU
    assert select_device(None) == CPU


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == MPS


def test_auto_is_the_cpu_on_this_machine():
    if torch.cuda.is_available() or dev._mps_available():
        pytest.skip("this machine has an accelerator")
    assert select_device("auto") == CPU


def test_unknown_device_name_is_a_device_error():
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        select_device("gpu")


# ----------------------------------------------------------------------- CPU bf16 from cpuinfo

def _fake_cpuinfo(monkeypatch, content: str | None):
    """Serve ``content`` for /proc/cpuinfo (None: unreadable); every other path is untouched."""
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if str(file) == "/proc/cpuinfo":
            if content is None:
                raise PermissionError(13, "Permission denied", file)
            return io.StringIO(content)
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)


FLAGS = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse sse2 avx avx2 avx512f {}\n\n"


@pytest.mark.parametrize("flag, expected", [("avx512_bf16", True), ("amx_bf16", True),
                                            ("avx512_vnni", False), ("", False)])
def test_native_bf16_is_read_from_cpuinfo_flags(monkeypatch, flag, expected):
    _fake_cpuinfo(monkeypatch, FLAGS.format(flag))
    assert cpu_has_native_bf16() is expected


def test_unreadable_cpuinfo_means_no_native_bf16(monkeypatch):
    _fake_cpuinfo(monkeypatch, None)
    assert cpu_has_native_bf16() is False


# ------------------------------------------------------------------------- gradient scaler

@pytest.fixture(scope="module")
def train_split():
    g = torch.Generator().manual_seed(0)
    return CifarSplit(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(64) % 10)


@pytest.mark.parametrize("precision, dtype, scaled", [("fp16", torch.float16, True),
                                                      ("fp32", None, False),
                                                      ("bf16", torch.bfloat16, False)])
def test_only_fp16_gets_the_gradient_scaler(train_split, precision, dtype, scaled):
    cfg = configure("fast", precision=precision, model_kwargs={"widths": (8, 16, 16)},
                    batch_size=32, device="cpu")
    t = prepare(cfg, train_split, CPU)
    assert t.amp_dtype == dtype
    assert t.scaler.is_enabled() is scaled


class _Libc:
    """A stand-in C library that records mallopt calls."""

    def __init__(self, result: int = 1):
        self.calls, self.result = [], result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_keep_freed_memory_turns_off_mmap_and_trimming():
    libc = _Libc()
    assert dev.keep_freed_memory(libc) is True
    assert libc.calls == [(-4, 0), (-1, 2**31 - 1)]  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = max
    assert dev.keep_freed_memory(_Libc(result=0)) is False  # malloc refused
    assert dev.keep_freed_memory(object()) is False          # no mallopt: not glibc


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CIFAR_LIB_KEEP_FREED_MEMORY", "0")
    libc = _Libc()
    assert dev.keep_freed_memory(libc) is False and libc.calls == []


def test_keep_freed_memory_ends_the_page_faults_of_reallocating(tmp_path):
    # Process-wide, so measured in a fresh process: allocate and free a 64 MB tensor ten
    # times; with glibc's defaults each allocation is a fresh mmap that faults every page in.
    script = tmp_path / "faults.py"
    script.write_text(
        "import resource, sys, torch\n"
        "from cifar_lib.device import keep_freed_memory\n"
        "applied = keep_freed_memory() if sys.argv[1] == 'keep' else False\n"
        "torch.ones(16 * 2**20)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(10):\n"
        "    torch.ones(16 * 2**20)\n"
        "print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    if not dev.has_glibc():
        pytest.skip("mallopt is glibc's")
    faults = {}
    for mode in ("default", "keep"):
        root = str(Path(__file__).resolve().parents[1])  # the cifar_lib under test
        out = subprocess.run([sys.executable, str(script), mode], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONPATH": root}
                             ).stdout.split()
        assert out[0] == str(mode == "keep")
        faults[mode] = int(out[1])
    assert faults["default"] > 10 * 16_000  # 64 MB is 16,384 pages of 4 kB, each time
    assert faults["keep"] < 3 * 16_384  # at most the first allocations' pages


def test_records_say_how_cpu_training_allocates(monkeypatch):
    from cifar_lib.bench.records import machine_fingerprint
    monkeypatch.setattr(dev, "has_glibc", lambda: True)
    assert dev.cpu_malloc() == "keeps freed memory"
    assert machine_fingerprint()["cpu_malloc"] == "keeps freed memory"
    monkeypatch.setenv("CIFAR_LIB_KEEP_FREED_MEMORY", "0")
    assert machine_fingerprint()["cpu_malloc"] == "as it is"
    monkeypatch.delenv("CIFAR_LIB_KEEP_FREED_MEMORY")
    monkeypatch.setattr(dev, "has_glibc", lambda: False)  # macOS, Windows, musl
    assert dev.cpu_malloc() == "as it is"
