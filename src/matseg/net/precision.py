"""Mixed precision shared by training and inference: which autocast dtype a ``precision``
setting means on a device, and the autocast context for it.

Its own small module so that inference does not import the trainer to get it.
"""

from __future__ import annotations

import torch

from matseg.net.config import TrainError


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device`` (None: plain fp32).

    Args:
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"`` (bf16 on a CPU
            with native bf16 or on a CUDA device that supports it, fp16 on other CUDA devices,
            else fp32).
        device: where the net runs.

    Raises:
        TrainError: fp16 on a device other than CUDA.
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise TrainError("precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cpu":  # auto: bf16 where the CPU has native bf16 (AVX512-BF16/AMX), else fp32
        return torch.bfloat16 if _cpu_has_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for :func:`resolve_precision`'s dtype on ``device`` (None: off, plain fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: absent in some builds
        return False
