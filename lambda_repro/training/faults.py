"""Test-only fault injection, switched on by environment variables (never set them in real runs).

``global step`` below is the 0-based optimizer step counted from the start of training.

* ``LAMBDA_REPRO_FAULT_NAN_AT_STEP=N``: rank 0's loss becomes NaN at step N, in every
  attempt (a deterministic divergence).
* ``LAMBDA_REPRO_FAULT_KILL_AT_STEP=N``: at step N one worker sends itself SIGKILL (a crash
  torchrun must recover from). Only in torchrun's first attempt, so the restarted group
  runs through.
* ``LAMBDA_REPRO_FAULT_TERM_AT_STEP=N``: at step N one worker sends itself SIGTERM
  (preemption). Only when this run started before step N, so the resumed run runs through.
* ``LAMBDA_REPRO_FAULT_STEP_DELAY_S=X``: every rank sleeps X seconds before each step (a slow
  host: gives a signal sent from outside time to land mid-epoch on a fast one).
* ``LAMBDA_REPRO_FAULT_RANK=R``: the rank that kills / terminates itself (default: the last).

The injector is a :class:`~lambda_repro.training.hooks.StepHooks`: the training loop only
calls hooks and knows nothing of faults; without these variables it gets the no-op hooks.
"""

from __future__ import annotations

import os
import signal
import time

import torch

from lambda_repro.training.hooks import NO_HOOKS, StepHooks

FAULT_VARIABLES = (
    "LAMBDA_REPRO_FAULT_NAN_AT_STEP",
    "LAMBDA_REPRO_FAULT_KILL_AT_STEP",
    "LAMBDA_REPRO_FAULT_TERM_AT_STEP",
)
DELAY_VARIABLE = "LAMBDA_REPRO_FAULT_STEP_DELAY_S"


def _step_from_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _delay_from_env() -> float:
    return float(os.environ.get(DELAY_VARIABLE) or 0.0)


def hooks_from_environment(rank: int, world_size: int, start_step: int) -> StepHooks:
    """A :class:`FaultInjector` when a fault variable is set, else the no-op hooks."""
    if any(_step_from_env(name) is not None for name in FAULT_VARIABLES) or _delay_from_env():
        return FaultInjector(rank, world_size, start_step)
    return NO_HOOKS


class FaultInjector(StepHooks):
    def __init__(self, rank: int, world_size: int, start_step: int) -> None:
        self.rank = rank
        self.start_step = start_step
        self.nan_step = _step_from_env("LAMBDA_REPRO_FAULT_NAN_AT_STEP")
        self.kill_step = _step_from_env("LAMBDA_REPRO_FAULT_KILL_AT_STEP")
        self.term_step = _step_from_env("LAMBDA_REPRO_FAULT_TERM_AT_STEP")
        fault_rank = _step_from_env("LAMBDA_REPRO_FAULT_RANK")
        self.fault_rank = world_size - 1 if fault_rank is None else fault_rank
        self.delay_s = _delay_from_env()
        self.first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0

    def on_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        if self.nan_step == step and self.rank == 0:
            return loss * float("nan")
        return loss

    def before_step(self, step: int) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.rank != self.fault_rank:
            return
        if self.kill_step == step and self.first_attempt and self.start_step <= step:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.term_step == step and self.start_step < step:
            os.kill(os.getpid(), signal.SIGTERM)
