"""The CUDA float32 math mode, set by the process that owns the run (a stage), never at import.

cuDNN runs ResNet-50's convolutions in TF32 on Ampere and later when
``torch.backends.cudnn.allow_tf32`` is on (PyTorch's default); matrix products, which the
fast lambda formulations consist of, are kept in full fp32 unless
``torch.backends.cuda.matmul.allow_tf32`` is also on. ``configure_cuda_matmul(True)`` gives
both the same mode.

``process_math_mode(device)`` picks what a process that runs a model on ``device`` sets, and
``configure_process_math(device)`` sets it: every process that owns a run calls it once at start,
through ``lambda_repro.process_setup.configure_process``. The CUDA settings
were never run on a GPU here (none was available); on CPU nothing is set.
"""

from __future__ import annotations

import torch


def configure_cuda_matmul(allow_tf32: bool) -> dict[str, bool]:
    """Allow (or forbid) TF32 for CUDA fp32 matmuls and cuDNN convolutions alike.

    Returns the previous settings, ``{"matmul": ..., "cudnn": ...}``, for a caller that
    restores them.
    """
    previous = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    return previous


def process_math_mode(device: torch.device) -> dict[str, bool]:
    """What the process that owns a run on ``device`` sets: ``{}`` off CUDA.

    On CUDA: ``allow_tf32``, TF32 for the matmuls exactly where cuDNN's convolutions have it
    (``torch.backends.cudnn.allow_tf32``, on unless the user turned it off), so that the
    lambda layers' GEMMs and ResNet-50's convolutions run in the same math mode; and
    ``cudnn_benchmark`` (every run here has fixed input shapes, so cuDNN may pick its
    kernels by timing them). Never run on a GPU.
    """
    if device.type != "cuda":
        return {}
    return {"allow_tf32": bool(torch.backends.cudnn.allow_tf32), "cudnn_benchmark": True}


def configure_process_math(device: torch.device) -> dict[str, bool]:
    """Apply :func:`process_math_mode` to this process; returns what was set (``{}`` on CPU).

    For a process's entry point only (it changes process-wide torch flags); the library
    never calls it on its own behalf. The CUDA part was never run on a GPU here.
    """
    settings = process_math_mode(device)
    if settings:
        configure_cuda_matmul(settings["allow_tf32"])
        torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    return settings
