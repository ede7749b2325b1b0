"""The learning rate at each step: optional linear warmup, then cosine decay to zero (the published recipe).

The rate is a pure function of the step, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math


def learning_rate(step: int, total_steps: int, peak_lr: float, warmup_steps: int = 0) -> float:
    """Rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * peak_lr * (1.0 + math.cos(math.pi * progress))
