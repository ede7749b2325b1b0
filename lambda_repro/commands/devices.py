"""The device a command runs on, checked before any work: asking for CUDA without one is a one-line error."""

from __future__ import annotations

import torch

from lambda_repro.commands.errors import CommandError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandError(f"unknown device {name!r}; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device
