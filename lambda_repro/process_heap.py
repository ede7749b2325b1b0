"""The CPU heap of a process that owns a run (a stage), kept instead of handed back to the kernel after each step.

glibc's malloc serves large blocks (at least 128 KiB, raised up to 32 MiB as such blocks are freed) with a fresh
``mmap`` and returns them on ``free``, and it gives the top of its heap back (``brk``) once more than twice
that threshold lies free there. A training step frees and re-allocates the same tensors every time, so the pages
come back zero-filled on first touch: a page fault per 4 KiB, on the step's critical path. Measured on the 2-core
CPU host (AMD EPYC, sgemm ~145 / oneDNN 3x3 conv ~180 GFLOP/s, training at 224; the two models interleaved, the
two heap settings in one process each, so read the direction; ``scripts/bench_lambda.py --heap`` compares them):

* batch 32: resnet50 1.2 M faults per step (4.6 GiB zero-filled), 8.2 s -> 6.1 s per step with the heap kept;
  lambda_resnet50 1.8 M faults, 13.2 s -> 9.6 s;
* batch 8: resnet50 no faults either way; lambda_resnet50 20-70 k faults per step (its blocks land at the heap top),
  0.68x -> 0.73x resnet50 with the heap kept.

``keep_heap()`` sets ``M_MMAP_MAX = 0`` (every block from the heap, whatever its size) and ``M_TRIM_THRESHOLD`` to
its maximum (the heap is not shrunk while the process lives): once its free blocks have settled (a few steps) a
step touches no new page. The process keeps its peak heap until it exits, which a training, evaluation or measuring
process does anyway. It is process-wide state, so only entry points call it (every process that owns a run, through
``lambda_repro.process_setup.configure_process``, and ``scripts/bench_lambda.py``); the library never does. It
leaves the allocator alone when the user has chosen one: any ``MALLOC_*`` variable or a ``glibc.malloc`` tunable in
the environment, or another allocator preloaded (jemalloc, tcmalloc, mimalloc). Off glibc (macOS, musl) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_NEVER = 2**31 - 1  # mallopt takes an int: trim only past 2 GiB of free top, i.e. never in practice
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def user_chose_allocator(environ: dict[str, str] | None = None) -> str | None:
    """Why the allocator is left alone, or None: the environment variable that says the user chose one."""
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        if name.startswith("MALLOC_"):
            return name
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if any(allocator in environ.get("LD_PRELOAD", "") for allocator in OTHER_ALLOCATORS):
        return "LD_PRELOAD"
    return None


_SETTING = {"kept": False}
"""Whether ``keep_heap`` set this process's allocator: a record of process-wide state, which only ``keep_heap``
changes (mallopt has no getter)."""


def heap_kept() -> bool:
    """Whether ``keep_heap`` kept this process's heap (it stays kept until the process exits). Code whose best
    choice depends on page faults asks this (the spectral lambda layer keeps larger tensors for its backward)."""
    return _SETTING["kept"]


def keep_heap(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Keep this process's freed memory for reuse (see the module docstring); returns what was done, for logging.

    ``{"heap": "kept"}`` when set; ``{"heap": "left to <VARIABLE>"}`` when the user chose the allocator;
    ``{"heap": "default"}`` off glibc or if glibc refused.
    """
    reason = user_chose_allocator(environ)
    if reason is not None:
        return {"heap": f"left to {reason}"}
    libc = _glibc()
    if libc is None:
        return {"heap": "default"}
    kept = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) == 1
    _SETTING["kept"] = _SETTING["kept"] or kept
    return {"heap": "kept" if kept else "default"}


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (present on glibc only: musl has mallopt but ignores it)
    except (OSError, AttributeError):
        return None
    return libc
