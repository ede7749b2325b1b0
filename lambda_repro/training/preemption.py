"""SIGTERM / SIGINT as a request to stop: finish the current step, save a checkpoint, exit cleanly.

Schedulers (SLURM, Kubernetes) preempt with SIGTERM and a grace period; torchrun forwards
the signal it receives to every worker and waits 30 s before SIGKILL. The handler only
sets a flag; the training loop agrees on it across ranks at the next step.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager that turns SIGTERM / SIGINT into ``self.requested = True`` while active."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
