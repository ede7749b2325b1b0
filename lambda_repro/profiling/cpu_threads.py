"""How many CPU threads a measurement should use, and how busy the machine was.

On a shared machine, OpenMP threads beyond the idle cores wait at every barrier for a
thread the OS has descheduled: measured here, ResNet-50 batch-1 inference took 0.30 s with
1 thread and 1.8 s with 2 on a 2-core machine with load average 9. ``auto`` therefore uses
the cores left idle (CPU count minus the cores busy right now, at least 1) unless a thread
count is given. "Right now" is CPU use sampled over half a second, not the 1-minute load
average: that one lags, and right after the pipeline's own training stage it still counts
the finished workers (seen here: 1 thread chosen on an idle 2-core machine).
"""

from __future__ import annotations

import os


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_cores(sample_s: float = 0.5) -> float | None:
    """Cores in use by any process, from system-wide CPU use over ``sample_s`` seconds."""
    try:
        import psutil
    except ImportError:
        return load_average()
    return psutil.cpu_percent(interval=sample_s) / 100 * (os.cpu_count() or 1)


def idle_cores(cpu_count: int | None = None, load: float | None = None) -> int:
    """CPU count minus the (rounded) busy cores (``load``; measured now when None), at least 1."""
    cpu_count = cpu_count or os.cpu_count() or 1
    load = busy_cores() if load is None else load
    if load is None:
        return cpu_count
    return max(1, min(cpu_count, cpu_count - round(load)))


def resolve_threads(threads: int | None) -> int:
    """``None`` -> :func:`idle_cores`; an integer as it is."""
    if threads is None:
        return idle_cores()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"profile.threads: must be null (the idle cores) or an integer >= 1, got {threads!r}")
    return threads
