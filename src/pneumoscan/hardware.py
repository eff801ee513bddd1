"""What the machine can do fast: native bf16 and the precision setting that follows from it."""

from __future__ import annotations

import torch


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
