"""The GPU-oriented switches of a run (precision, channels_last, pin_memory), resolved for the device at hand.

Shared by training and the evaluate stage's workers, so that a model is scored as it was
trained. Each is tested forced on on CPU; none has run on a GPU in this project.
"""

from __future__ import annotations

import warnings

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device, cpu_autocast: bool = False) -> torch.dtype | None:
    """Autocast dtype on CUDA (not run on a GPU here); on CPU, where bf16/fp16 autocast is slow, fp32
    unless ``cpu_autocast`` (``train.cpu_autocast``) asks for the GPU's path to run on CPU."""
    if device.type != "cuda" and not cpu_autocast:
        if precision != "fp32":
            warnings.warn(
                f"train.precision={precision} applies on GPU only (train.cpu_autocast: true forces it); "
                "training in fp32 on CPU",
                stacklevel=2,
            )
        return None
    return PRECISIONS[precision]


def resolve_pin_memory(setting: str | bool, device: torch.device) -> bool:
    """``auto``: page-locked batches when copying to CUDA; forced on CPU it runs (torch warns, no pinning)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def resolve_channels_last(setting: str | bool, device: torch.device) -> bool:
    """``auto``: channels_last on CUDA (tensor cores prefer NHWC; not run here: no GPU), off on CPU."""
    return device.type == "cuda" if setting == "auto" else bool(setting)
