"""Pick the device to run on: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

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
                              "use device='auto' or 'cpu' (on Colab: Runtime → Change runtime type → GPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'")
    return device


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision``; None means full fp32.

    'auto' is bf16 on GPUs that support it (else fp16) and on CPUs with native bf16 (AVX512-BF16/AMX),
    fp32 elsewhere: bf16 where the hardware is slow at it would cost speed and gain nothing.
    'gpu' is the same on GPUs and fp32 on every CPU (the seed recipe: faithful on a CPU, fast on
    a GPU). 'bf16', 'fp16' and 'fp32' force one.
    """
    if precision == "fp32" or (precision == "gpu" and device.type != "cuda"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision not in ("auto", "gpu"):
        raise ValueError(f"unknown precision {precision!r}: use 'auto', 'gpu', 'bf16', 'fp16' or 'fp32'")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (x86 AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's model name, for benchmark records."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()
