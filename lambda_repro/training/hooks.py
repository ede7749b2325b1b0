"""Callbacks the training loop calls at each step: a no-op by default, fault injection in tests."""

from __future__ import annotations

import torch


class StepHooks:
    """What the loop calls around each optimizer step; subclass to observe or perturb it (see ``faults``)."""

    def before_step(self, step: int) -> None:
        """Called with the global step before the step starts (before ranks agree on stopping)."""

    def on_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        """The loss the step goes on with (before ranks check that it is finite)."""
        return loss


NO_HOOKS = StepHooks()
