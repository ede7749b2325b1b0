"""The optimizer, chosen by name (``train.optimizer``): one place for the trainer and the profile's training step.

``sgd`` is the published recipe (SGD with momentum, weight decay on every parameter).
``adamw`` is the usual alternative; ``momentum`` is then its beta1. A new optimizer is one
entry in :data:`OPTIMIZERS` and its branch in :func:`create_optimizer`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "adamw")


def create_optimizer(
    name: str, parameters: Iterable[torch.nn.Parameter], *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``parameters``; the learning rate is then set per step (see ``schedule``)."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
