"""Peak memory of a measurement: CUDA max allocated on a GPU, the process's peak RSS on CPU.

The two are different quantities, so every reading carries its ``kind``:

* ``cuda_max_allocated``: bytes of tensors the caching allocator handed out, peak since
  the last reset (:func:`reset_peak`), so each phase gets its own peak. Not run on a GPU
  in this project yet.
* ``cpu_peak_rss``: the process's resident-set high-water mark (``ru_maxrss``). It cannot
  be reset: it covers everything the process did so far (interpreter, torch, the model,
  every earlier phase). Measure each model in a fresh process so peaks do not mix.
"""

from __future__ import annotations

import resource
import sys

import torch

CUDA_KIND = "cuda_max_allocated"
CPU_KIND = "cpu_peak_rss"


def memory_kind(device: torch.device) -> str:
    return CUDA_KIND if device.type == "cuda" else CPU_KIND


def reset_peak(device: torch.device) -> None:
    """Start a new peak on CUDA; on CPU nothing can be reset (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    """The current peak in bytes, of the kind :func:`memory_kind` names."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return int(rss if sys.platform == "darwin" else rss * 1024)
