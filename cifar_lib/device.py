"""Pick the device to run on: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

import os
import platform

import torch


class DeviceError(RuntimeError):
    """The requested device is not available here; the message says what to use instead."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device(requested: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) → the best device present; otherwise check that ``requested`` exists.

    >>> select_device("cpu")
    device(type='cpu')
    """
    name = "auto" if requested is None else str(requested)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but no CUDA GPU is available here; "
                              "use 'auto' or 'cpu' (command line: --device cpu; on Colab: "
                              "Runtime → Change runtime type → GPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'")
    return device


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device: (7, 5) on a T4, (8, 0) on an A100."""
    return torch.cuda.get_device_capability(device)


# bf16 runs natively from Ampere (compute capability 8.0: A100, A10, L4, RTX 30xx, H100).
# Below it (T4, V100) torch.cuda.is_bf16_supported() still says True because bf16 can be
# *emulated*, slowly; fp16 with a gradient scaler is what those cards are fast at.
BF16_MIN_CAPABILITY = (8, 0)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means full fp32.

    'auto': on CUDA, bf16 from compute capability 8.0 and fp16 below it (the caller scales the
    loss, see ``fit``); on CPUs, bf16 only where the CPU has native bf16 (AVX512-BF16/AMX);
    fp32 on Apple MPS and other CPUs, where mixed precision is slow or unsupported.
    'gpu': the same on CUDA and fp32 everywhere else (the original recipe: faithful on a CPU, fast on
    a GPU). 'bf16', 'fp16' and 'fp32' force one, on any device.
    """
    if precision not in ("auto", "gpu", "bf16", "fp16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: use 'auto', 'gpu', 'bf16', 'fp16' or 'fp32'")
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if cuda_capability(device) >= BF16_MIN_CAPABILITY else torch.float16
    if precision == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """How records and metrics name an autocast dtype: 'bfloat16', 'float16', or 'fp32' (None)."""
    return str(dtype).replace("torch.", "") if dtype is not None else "fp32"


def sync(device: torch.device | str) -> None:
    """Wait until every kernel queued on ``device`` has finished (a no-op on the CPU): a clock
    read right after a GPU call otherwise measures the launch, not the work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def use_channels_last(device: torch.device, requested: bool | str = "auto") -> bool:
    """Whether to train in the channels-last (NHWC) memory layout.

    'auto': on CUDA (cuDNN's tensor-core kernels want NHWC) and on CPUs (oneDNN's too; the
    inference benchmark compares both layouts), not on Apple MPS, where NHWC convolutions are
    converted back and forth. True/False force it.
    """
    if requested == "auto":
        return device.type in ("cuda", "cpu")
    return bool(requested)


def read_cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """/proc/cpuinfo as {key: its first value}, i.e. the first processor's (all are alike);
    empty where the file cannot be read (not Linux)."""
    found = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return found


def cpu_flag_names() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo ('flags' on x86, 'Features' on Arm)."""
    info = read_cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (x86 AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flag_names())


def cpu_model() -> str:
    """The CPU's model name, for benchmark records."""
    name = read_cpuinfo().get("model name")
    if name:
        return name
    return platform.processor() or platform.machine()


# glibc's malloc serves every large block (activations, gradients: megabytes each) with a fresh
# mmap and returns it to the kernel when it is freed, so each CPU training step maps, faults in
# and zeroes the same memory again. Telling malloc to keep freed memory for reuse removes that
# kernel work; the price is that the process holds on to its peak memory until it exits.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h
KEEP_FREED_MEMORY = "CIFAR_LIB_KEEP_FREED_MEMORY"  # set to 0 to leave malloc as it is


def has_glibc() -> bool:
    """True on Linux with glibc, whose malloc ``keep_freed_memory`` tunes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _keeping_wanted() -> bool:
    return os.environ.get(KEEP_FREED_MEMORY, "1") != "0"


def cpu_malloc() -> str:
    """How CPU training allocates memory in this environment, for benchmark records: "keeps
    freed memory" (glibc, the default), or "as it is" ($CIFAR_LIB_KEEP_FREED_MEMORY=0, or not
    glibc)."""
    return "keeps freed memory" if has_glibc() and _keeping_wanted() else "as it is"


def keep_freed_memory(libc=None) -> bool:
    """On Linux with glibc, make malloc keep freed memory for reuse (no mmap for large blocks,
    no trimming of the heap); True when applied, False elsewhere (macOS, Windows, musl) or when
    $CIFAR_LIB_KEEP_FREED_MEMORY is 0, where nothing changes. Process-wide and for the rest of
    the process: ``fit`` calls it for CPU training; a library import does not. ``libc``: for
    tests, a stand-in with ``mallopt``."""
    if not _keeping_wanted():
        return False
    if libc is None:
        import ctypes
        if not has_glibc():
            return False
        libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    # mallopt returns 1 on success; the trim threshold is an int, so its largest value.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
