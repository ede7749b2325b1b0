"""Pieces of the position term that every fast formulation shares."""

from __future__ import annotations

import torch


def reachable_taps(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop an odd ``(.., r, r)`` kernel to the taps that can reach an ``height x width`` map.

    Taps farther from the centre than the map's extent only ever meet zero padding.
    """
    pad = (kernel.shape[-1] - 1) // 2
    reach_y, reach_x = min(pad, height - 1), min(pad, width - 1)
    return kernel[..., pad - reach_y : pad + reach_y + 1, pad - reach_x : pad + reach_x + 1]


def shared_lambda(content: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The part of every position's lambda that does not depend on the position: ``(N, k, v)``.

    The content lambda, plus the position lambdas' bias (``bias[k]`` for every value channel).
    """
    return content if bias is None else content + bias[:, None]
