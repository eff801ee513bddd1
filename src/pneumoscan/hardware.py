"""What the machine can do fast: native bf16 and the precision setting that follows from it."""

from __future__ import annotations

import ctypes
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_reusing = False


def has_native_bf16(device: str = "cpu") -> bool:
    """True where bf16 matrix math runs natively (CUDA with bf16, or CPUs with AVX512-BF16/AMX).

    On CPUs without it (e.g. AVX2-only) bf16 autocast is emulated and many times slower than fp32.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def use_bf16(precision: str, device: str = "cpu") -> bool:
    """Resolve a config ``precision`` ("auto", "bf16", "32") to whether bf16 autocast is used."""
    return precision == "bf16" or (precision == "auto" and has_native_bf16(device))


def lightning_precision(precision: str, accelerator: str) -> str:
    """Lightning ``Trainer(precision=...)`` value for a config ``precision``."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if use_bf16(precision, "cuda" if gpu else "cpu") else "32-true"


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process for reuse (glibc only; once per process; True if set).

    glibc serves every allocation over 32 MB with a fresh ``mmap`` and returns it to the kernel on
    ``free``, so each training step of a large network page-faults and zeroes its activations anew
    (``seed-cnn`` at 224 px, batch 32: 200 MB tensors; measured: a quarter of the CPU time in the
    kernel and 1.6x the CPU time per image). Turning those ``mmap``s off and raising the trim
    threshold makes freed blocks reusable, as a caching allocator would. Memory use stays at its peak.
    """
    global _reusing
    if _reusing or not sys.platform.startswith("linux"):
        return _reusing
    try:
        libc = ctypes.CDLL("libc.so.6")
        _reusing = bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        _reusing = False
    return _reusing
