"""What a process that owns a run sets once, before any work: the CUDA math mode and the CPU heap.

Both are process-wide, so the library never sets them; the entry points do, each through this one call: the
training and evaluate workers, the single-process evaluate stage, the profile stage (which measures the claims'
evidence itself) and its measuring processes, and ``lambda-repro benchmark``. ``tests/test_math_mode.py`` checks
every one of them, with the work stubbed out.
"""

from __future__ import annotations

import torch

from lambda_repro.models.math_mode import configure_process_math
from lambda_repro.process_heap import keep_heap


def configure_process(device: torch.device) -> dict:
    """Set the math mode for ``device`` (``models.math_mode``) and keep the heap (``process_heap``).

    Returns what was done, for the run's records: ``{"math_mode": {...}, "heap": "kept" | "default" | ...}``.
    """
    math_mode = configure_process_math(device)  # CUDA: TF32 as cuDNN gets it, cudnn.benchmark; CPU: nothing
    heap = keep_heap()["heap"]  # CPU: freed blocks stay in the heap, no page faults per step
    return {"math_mode": math_mode, "heap": heap}


def process_tags(process: dict) -> dict[str, str]:
    """MLflow tags of what ``configure_process`` did: ``process.heap``, ``process.math_mode.<setting>``."""
    tags = {"process.heap": str(process["heap"])}
    tags.update({f"process.math_mode.{key}": str(value) for key, value in process["math_mode"].items()})
    return tags
