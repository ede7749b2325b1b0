"""Numeric precision of a measurement: fp32, or bf16 / fp16 autocast (with loss scaling for fp16 training)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """``torch.autocast`` for bf16 / fp16 on ``device``; nothing for fp32 (weights stay fp32 in every case)."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 training (its gradients underflow without one); ``None`` otherwise.

    The fp16 path is meant for CUDA and has not been run on a GPU in this project yet.
    """
    if check_precision(precision) != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
