"""Timing a step the way benchmarks should: warm-up, device synchronisation, repetitions, medians and spread."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a timer measures the work and not its launch.

    A no-op on CPU, where every op has finished when it returns. The CUDA branch
    (``torch.cuda.synchronize``) has not been run on a GPU in this project yet.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeated(
    step: Callable[[], object],
    *,
    device: torch.device,
    warmup: int = 1,
    repeats: int = 5,
    min_repeats: int = 2,
    iters_per_repeat: int = 1,
    max_seconds: float | None = None,
    timed_window: Callable[[], AbstractContextManager] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per call of ``step``, one value per repetition.

    ``warmup`` untimed calls first (allocator, autotuning, lazy init), then up to ``repeats``
    repetitions of ``iters_per_repeat`` calls each, the device synchronised before and after
    each repetition. Once the timed total passes ``max_seconds`` it stops early, but never
    before ``min_repeats`` repetitions: a cap for slow machines that still leaves a spread.
    ``timed_window`` (e.g. a GPU sampler's window) is entered around the timed repetitions only.
    """
    if repeats < 1 or iters_per_repeat < 1 or warmup < 0:
        raise ValueError("repeats and iters_per_repeat must be >= 1, warmup >= 0")
    min_repeats = max(1, min(min_repeats, repeats))
    for _ in range(warmup):
        step()
    samples: list[float] = []
    synchronize(device)
    with timed_window() if timed_window else contextlib.nullcontext():
        total = 0.0
        for _ in range(repeats):
            synchronize(device)
            start = clock()
            for _ in range(iters_per_repeat):
                step()
            synchronize(device)
            elapsed = clock() - start
            samples.append(elapsed / iters_per_repeat)
            total += elapsed
            if max_seconds is not None and total >= max_seconds and len(samples) >= min_repeats:
                break
    return samples


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: list[float]) -> dict[str, float | int]:
    """Median, interquartile range (p25 / p75), min, max and count of ``values``."""
    return {
        "median": statistics.median(values),
        "p25": percentile(values, 25),
        "p75": percentile(values, 75),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def throughput(seconds_per_step: list[float], batch_size: int) -> dict[str, float | int]:
    """Images per second from per-step times: each repetition converted, then summarised.

    The spread is of the converted values, so ``min`` is the slowest repetition.
    """
    return summarize([batch_size / s for s in seconds_per_step])
