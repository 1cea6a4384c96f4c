"""Automatic mixed precision: which autocast dtype a device gets, and whether it needs a GradScaler.

``amp="auto"`` picks bf16 only on GPUs that compute in bf16 natively (compute capability 8.0
or newer: A100, H100, RTX 30xx/40xx, L4). Older GPUs (Colab's free T4 is 7.5, V100 7.0) get fp16
with a ``GradScaler``: ``torch.cuda.is_bf16_supported()`` answers True on them too, but only
because bf16 is emulated there, which is slower than fp32. CPUs and Apple GPUs (MPS) train in fp32.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "none")
NATIVE_BF16_CAPABILITY = (8, 0)


def has_native_bf16(device: torch.device | str) -> bool:
    """True on a CUDA device of compute capability 8.0 or newer (bf16 in hardware, not emulated)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY


def amp_dtype(device: torch.device | str, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device`` (None: train in fp32).

    Args:
        device: where the model runs; only CUDA uses mixed precision.
        amp: ``"auto"`` (bf16 where native, else fp16), ``"bf16"``, ``"fp16"`` or ``"none"``.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, not {amp!r}")
    device = torch.device(device)
    if device.type != "cuda" or amp == "none":
        return None
    if amp == "bf16" or (amp == "auto" and has_native_bf16(device)):
        return torch.bfloat16
    return torch.float16


def autocast_for(device: torch.device | str, amp: str = "auto") -> tuple[Any, torch.amp.GradScaler | None]:
    """(autocast context, GradScaler or None) for ``device`` and ``amp`` (see ``amp_dtype``).

    fp16 comes with a ``GradScaler`` (its small range underflows small gradients without one);
    bf16 has fp32's range and needs none; fp32 gets a context that does nothing.
    """
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return nullcontext(), None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler
