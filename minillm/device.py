"""Everything that depends on the hardware, in one place: which device, which precision.

Other modules ask here instead of testing `torch.cuda.is_available()` themselves,
so that the CPU -> CUDA -> many-GPU path changes in one file.
"""

from __future__ import annotations

import contextlib

import torch

from minillm.utils import MiniLLMError


def pick_device(preferred: str = "auto") -> torch.device:
    """The device to run on: CUDA if present, else Apple's MPS, else the CPU.

    `preferred` may name one ("cpu", "cuda", "cuda:1", "mps"); asking for one that
    is missing is an error, not a silent fallback.
    """
    if preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except RuntimeError as e:
        raise MiniLLMError(f"unknown device {preferred!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MiniLLMError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MiniLLMError("device 'mps' was asked for, but it is not available")
    return device


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast is worth using on `device` (CPU: always supported)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("cpu", "mps")


def autocast(device: torch.device | str, dtype: str = "float32"):
    """A context manager for mixed precision: "float32" (off), "bfloat16" or "float16"."""
    device = torch.device(device)
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype not in ("bfloat16", "float16"):
        raise MiniLLMError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def device_name(device: torch.device | str) -> str:
    """A human-readable name: the GPU's product name, or 'cpu'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
