"""The ratio of two models' timings from paired repetitions, with a confidence interval and a trust flag.

Repetition ``i`` of the model and repetition ``i`` of the baseline ran back to back (interleaved), so
load that comes and goes hits both members of a pair alike: their per-pair ratio cancels it, where
the ratio of two separately taken medians does not. The point estimate is the median of the per-pair
ratios (one pair straddling the moment a load starts is an outlier it ignores); the interval is a
percentile bootstrap of that median over the pairs, done on log ratios, deterministic (fixed seed).
"""

from __future__ import annotations

import math
import random
import statistics

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def paired_ratio(
    model: list[float],
    baseline: list[float],
    *,
    max_ci_width: float,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict:
    """``model / baseline`` from paired values (e.g. img/s of repetition ``i`` of each).

    Returns ``ratio`` (median of the per-pair ratios), ``ci_low`` / ``ci_high``, ``n`` pairs,
    ``ci_width`` (``ci_high / ci_low - 1``, relative) and ``trusted``: False when the interval is wider
    than ``max_ci_width`` or there are fewer than 2 pairs. Extra values of the longer list are dropped.
    """
    pairs = [(m, b) for m, b in zip(model, baseline, strict=False) if m > 0 and b > 0]
    if not pairs:
        return {"ratio": None, "ci_low": None, "ci_high": None, "n": 0, "ci_width": None, "trusted": False}
    logs = [math.log(m / b) for m, b in pairs]
    low, high = bootstrap_median_interval(logs, confidence, seed)
    width = math.exp(high - low) - 1
    return {
        "ratio": math.exp(statistics.median(logs)),
        "ci_low": math.exp(low),
        "ci_high": math.exp(high),
        "n": len(pairs),
        "confidence": confidence,
        "ci_width": width,
        "max_ci_width": max_ci_width,
        "trusted": len(pairs) >= 2 and width <= max_ci_width,
    }


def bootstrap_median_interval(
    values: list[float], confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values``; a single value gives a zero-width interval."""
    if len(values) < 2:
        return values[0], values[0]
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - confidence) / 2
    return medians[int(tail * (len(medians) - 1))], medians[math.ceil((1 - tail) * (len(medians) - 1))]


def throughputs(seconds: list[float], batch_size: int) -> list[float]:
    """Images per second of each repetition."""
    return [batch_size / s for s in seconds]
