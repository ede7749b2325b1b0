"""How time and memory grow with the number of positions: a sweep of map sizes, and the fitted exponent.

The paper's claim: a lambda layer's cost is linear in the number of positions ``n`` (its position
lambdas use a fixed 23x23 context), where global self-attention is quadratic (every query against
every key). :func:`fit_exponent` is the least-squares slope of ``log(y)`` against ``log(n)``: about 1
for linear growth, 2 for quadratic. Over small sizes fixed costs flatten the slope, so the sweep
should reach maps where the per-position work dominates.
"""

from __future__ import annotations

import math

import torch

from lambda_repro.models import create_model
from lambda_repro.profiling.contenders import build_contender
from lambda_repro.profiling.layer_comparison import interleaved_medians, training_step
from lambda_repro.profiling.saved_memory import saved_tensor_bytes

SCALING_CONTENDERS = ("lambda-fast", "mhsa-global", "mhsa-local7x7")


def fit_exponent(positions: list[float], values: list[float]) -> float | None:
    """Slope of the least-squares line through ``(log n, log y)``; ``None`` with fewer than 2 distinct sizes."""
    points = [(math.log(n), math.log(y)) for n, y in zip(positions, values, strict=True) if n > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return cov / var


def layer_sweep(
    sides: list[int],
    device: torch.device,
    repeats: int,
    channels: int = 64,
    batch: int = 1,
    contenders: tuple[str, ...] = SCALING_CONTENDERS,
) -> list[dict]:
    """One row per (contender, side): median training-step ``seconds`` and ``saved_mb`` of one layer.

    The sweep stops at the first side that runs out of (GPU) memory; the sides before it are kept.
    """
    rows = []
    for side in sides:
        torch.manual_seed(0)
        modules = {kind: build_contender(kind, channels, 1).to(device).train() for kind in contenders}
        x = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
        try:
            memory = {kind: saved_tensor_bytes(lambda m=m, x=x: m(x), m.parameters()) for kind, m in modules.items()}
            medians = interleaved_medians({k: training_step(m, x) for k, m in modules.items()}, device, repeats)
        except torch.OutOfMemoryError:  # a GPU sweep into sizes global attention cannot hold; not run on a GPU here
            del modules, x
            torch.cuda.empty_cache()
            break
        rows += [
            {
                "what": kind,
                "side": side,
                "positions": side * side,
                "seconds": medians[kind],
                "saved_mb": memory[kind] / 2**20,
            }
            for kind in contenders
        ]
    return rows


def model_sweep(
    models: dict[str, dict], resolutions: list[int], device: torch.device, repeats: int, batch: int = 1
) -> list[dict]:
    """One row per (model, input side): median training-step ``seconds`` and ``saved_mb`` of the whole model."""
    rows = []
    built = {}
    for name, kwargs in models.items():
        torch.manual_seed(0)
        built[name] = create_model(kwargs.get("name", name), **{k: v for k, v in kwargs.items() if k != "name"})
        built[name].to(device).train()
    for side in resolutions:
        x = torch.randn(batch, 3, side, side, device=device, requires_grad=False)
        try:
            memory = {name: saved_tensor_bytes(lambda m=m, x=x: m(x), m.parameters()) for name, m in built.items()}
            medians = interleaved_medians({n: training_step(m, x) for n, m in built.items()}, device, repeats)
        except torch.OutOfMemoryError:  # larger inputs will not fit either; not run on a GPU here
            torch.cuda.empty_cache()
            break
        rows += [
            {
                "what": name,
                "side": side,
                "positions": side * side,
                "seconds": medians[name],
                "saved_mb": memory[name] / 2**20,
            }
            for name in built
        ]
    return rows


def exponents(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """``{what: {"time": slope, "memory": slope}}`` fitted over each ``what``'s rows."""
    fitted = {}
    for what in dict.fromkeys(r["what"] for r in rows):
        mine = [r for r in rows if r["what"] == what]
        positions = [r["positions"] for r in mine]
        fitted[what] = {
            "time": fit_exponent(positions, [r["seconds"] for r in mine]),
            "memory": fit_exponent(positions, [r["saved_mb"] for r in mine]),
        }
    return fitted
