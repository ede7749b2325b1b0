"""The CUDA float32 math mode, set by the process that owns the run (a stage), never at import.

cuDNN runs ResNet-50's convolutions in TF32 on Ampere and later when
``torch.backends.cudnn.allow_tf32`` is on (PyTorch's default); matrix products, which the
fast lambda formulations consist of, are kept in full fp32 unless
``torch.backends.cuda.matmul.allow_tf32`` is also on. ``configure_cuda_matmul(True)`` gives
both the same mode. Never run on a GPU here (none was available); on CPU it only sets flags.
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
