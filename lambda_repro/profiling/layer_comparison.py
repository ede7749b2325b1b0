"""The lambda layer beside its contenders at each lambda-layer shape of Lambda-ResNet-50: time and memory.

At every shape of :data:`~lambda_repro.profiling.layer_shapes.LAMBDA_RESNET50_LAYER_SHAPES`, each
contender of :mod:`~lambda_repro.profiling.contenders` runs a training step of the layer alone
(forward + backward of ``sum(output)``) on a random ``(batch, channels, side, side)`` input. The
contenders' repetitions are interleaved (one of each, in turn) so that load coming and going hits
them alike. Memory is what the forward saves for the backward (:func:`saved_tensor_bytes`): the
activation memory the paper's claims are about, comparable between layers measured in one process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from lambda_repro.profiling.contenders import build_contender
from lambda_repro.profiling.layer_shapes import LAMBDA_RESNET50_LAYER_SHAPES
from lambda_repro.profiling.saved_memory import saved_tensor_bytes
from lambda_repro.profiling.timing import synchronize

CLAIM_CONTENDERS = ("lambda-fast", "mhsa-global", "mhsa-local7x7", "conv3x3")


def training_step(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward + backward of ``module(x).sum()``, gradients cleared first."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return step


def interleaved_medians(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each step over ``repeats`` rounds, one call of every step per round, in turn."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(repeats):
        names = list(steps) if rep % 2 == 0 else list(steps)[::-1]
        for name in names:
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def compare_layers(
    batch: int,
    repeats: int,
    device: torch.device,
    contenders: tuple[str, ...] = CLAIM_CONTENDERS,
    shapes: tuple[tuple[int, int, int, int], ...] = LAMBDA_RESNET50_LAYER_SHAPES,
) -> list[dict]:
    """One row per (shape, contender): ``seconds`` (median training step), ``img_per_s``, ``saved_mb``."""
    rows = []
    for channels, stride, side, count in shapes:
        torch.manual_seed(0)
        modules = {kind: build_contender(kind, channels, stride).to(device).train() for kind in contenders}
        x = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
        memory = {kind: saved_tensor_bytes(lambda m=m, x=x: m(x), m.parameters()) for kind, m in modules.items()}
        medians = interleaved_medians({k: training_step(m, x) for k, m in modules.items()}, device, repeats)
        for kind in contenders:
            rows.append(
                {
                    "channels": channels,
                    "stride": stride,
                    "side": side,
                    "layers": count,
                    "contender": kind,
                    "batch": batch,
                    "seconds": medians[kind],
                    "img_per_s": batch / medians[kind],
                    "saved_mb": memory[kind] / 2**20,
                }
            )
    return rows
