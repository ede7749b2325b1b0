"""A verdict that knows seed noise: over the runs of one recipe (seeds x models), per model the mean,
standard deviation and 95% t-interval of top-1 / top-5; lambda_resnet50 minus resnet50 paired by
seed; and the published-table verdict taken on the interval.

Verdict rule on an interval (``[low, high]`` the 95% interval of the mean, ``tol`` the tolerance):

* ``reproduced``: the published figure lies within ``[low - tol, high + tol]`` for top-1 and top-5;
* ``below published``: ``high + tol`` is below it for either;
* ``above published``: ``low - tol`` is above it for either, and none is below.

One run has no interval: it is then the point itself (the single-run rule of
:mod:`~lambda_repro.reporting.comparison`). Comparability (ImageNet, 224, 130 epochs, ...) is
that module's, on the run's own eval figures. Pure functions: where the runs come from
(MLflow: :mod:`~lambda_repro.reporting.experiment_runs`) is the caller's business.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from scipy import stats

from lambda_repro.published import PUBLISHED_MODEL
from lambda_repro.reporting.comparison import (
    ABOVE,
    BELOW,
    NOT_COMPARABLE,
    REPRODUCED,
    WITHIN,
    AccuracyComparison,
    Tolerance,
    compare_accuracy,
)

BASELINE_MODEL = "resnet50"
METRICS = ("top1", "top5")


@dataclass(frozen=True)
class RunScore:
    """One evaluated run: its model and seed, and its eval metrics (eval.json's keys: top1, top5, dataset, ...)."""

    model: str
    seed: int
    scores: dict
    name: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and the two-sided t-interval of the mean over ``n`` values."""

    mean: float
    std: float  # nan for one value
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)``; one value gives the point itself and std nan."""
    if not values:
        raise ValueError("t_interval needs at least one value")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, math.nan, mean, mean, 1, confidence)
    std = statistics.stdev(values)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n, confidence)


def paired_difference(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> Interval | None:
    """The t-interval of ``a[seed] - b[seed]`` over the seeds both have (None: no common seed)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return t_interval([a[s] - b[s] for s in seeds], confidence)


def interval_verdict(interval: Interval, published: float, tolerance: float) -> str:
    """The module docstring's rule for one metric."""
    if interval.high + tolerance < published:
        return BELOW
    if interval.low - tolerance > published:
        return ABOVE
    return REPRODUCED


def accuracy_over_runs(
    single: AccuracyComparison, intervals: dict[str, Interval] | None, seeds: tuple[int, ...] = ()
) -> AccuracyComparison:
    """``single`` (one run's comparison) taken on the intervals of its recipe's runs when there are >= 2 of them.

    Comparability and its reasons stay the run's own; a comparable metric's verdict becomes the
    interval rule of the module docstring, ``measured`` the mean. With one run the point rule stays.
    """
    runs = min((interval.n for interval in (intervals or {}).values()), default=1)
    if runs < 2:
        return replace(single, runs=1, seeds=seeds[:1])
    rows = []
    for row in single.metrics:
        interval = intervals.get(row.name)
        if interval is None:
            rows.append(row)
            continue
        verdict = row.verdict
        if verdict != NOT_COMPARABLE:
            found = interval_verdict(interval, row.published, row.tolerance or 0.0)
            verdict = WITHIN if found == REPRODUCED else found
        rows.append(replace(row, measured=interval.mean, interval=interval, verdict=verdict))
    overall = single.verdict
    if single.comparable:
        found = {row.verdict for row in rows}
        overall = BELOW if BELOW in found else ABOVE if ABOVE in found else REPRODUCED
    return AccuracyComparison(overall, single.reasons, tuple(rows), runs, seeds)


@dataclass(frozen=True)
class VarianceSummary:
    per_model: dict[str, dict[str, Interval]]  # model -> metric -> interval
    values: dict[str, dict[str, dict[int, float]]]  # model -> metric -> seed -> value
    difference: dict[str, Interval]  # metric -> interval of PUBLISHED_MODEL - BASELINE_MODEL, paired by seed
    paired_seeds: tuple[int, ...]
    accuracy: AccuracyComparison  # the published row against PUBLISHED_MODEL's runs
    runs: int  # runs pooled, after one per (model, seed)

    @property
    def verdict(self) -> str:
        return self.accuracy.verdict

    @property
    def verdict_reasons(self) -> tuple[str, ...]:
        return self.accuracy.reasons

    @property
    def verdict_runs(self) -> int:
        return self.accuracy.runs if self.accuracy.metrics else 0

    @property
    def metric_verdicts(self) -> dict[str, str]:
        return {row.name: row.verdict for row in self.accuracy.metrics} if self.accuracy.comparable else {}

    def seeds(self, model: str) -> tuple[int, ...]:
        return tuple(sorted(self.values.get(model, {}).get("top1", {})))

    def paired_values(self, metric: str) -> dict[int, float]:
        """``PUBLISHED_MODEL - BASELINE_MODEL`` per paired seed."""
        a = self.values.get(PUBLISHED_MODEL, {}).get(metric, {})
        b = self.values.get(BASELINE_MODEL, {}).get(metric, {})
        return {seed: a[seed] - b[seed] for seed in self.paired_seeds if seed in a and seed in b}


def latest_per_model_and_seed(runs: list[RunScore]) -> list[RunScore]:
    """One run per (model, seed): the last one given (pass runs oldest first)."""
    kept: dict[tuple[str, int], RunScore] = {}
    for run in runs:
        kept[(run.model, run.seed)] = run
    return list(kept.values())


def summarize(runs: list[RunScore], tolerance: Tolerance | None = None, confidence: float = 0.95) -> VarianceSummary:
    """Intervals per model, the paired difference, and the published verdict on the intervals.

    ``runs`` must be of one recipe (:func:`~lambda_repro.reporting.experiment_runs.group_by_recipe`), oldest first.
    """
    tolerance = tolerance or Tolerance()
    runs = latest_per_model_and_seed(runs)
    by_model: dict[str, dict[str, dict[int, float]]] = {}
    for run in runs:
        for metric in METRICS:
            value = run.scores.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                by_model.setdefault(run.model, {}).setdefault(metric, {})[run.seed] = float(value)
    by_model = {model: {m: dict(sorted(v.items())) for m, v in metrics.items()} for model, metrics in by_model.items()}
    per_model = {
        model: {metric: t_interval(list(values.values()), confidence) for metric, values in metrics.items()}
        for model, metrics in sorted(by_model.items())
    }
    difference, seeds = {}, ()
    if PUBLISHED_MODEL in by_model and BASELINE_MODEL in by_model:
        for metric in METRICS:
            found = paired_difference(
                by_model[PUBLISHED_MODEL].get(metric, {}), by_model[BASELINE_MODEL].get(metric, {}), confidence
            )
            if found is not None:
                difference[metric] = found
        seeds = tuple(
            sorted(set(by_model[PUBLISHED_MODEL].get("top1", {})) & set(by_model[BASELINE_MODEL].get("top1", {})))
        )
    published_runs = [run for run in runs if run.model == PUBLISHED_MODEL]
    if published_runs:
        single = compare_accuracy(published_runs[-1].scores, None, tolerance)
        model_seeds = tuple(sorted(by_model.get(PUBLISHED_MODEL, {}).get("top1", {})))
        accuracy = accuracy_over_runs(single, per_model.get(PUBLISHED_MODEL), model_seeds)
    else:
        accuracy = AccuracyComparison(NOT_COMPARABLE, (f"no run of {PUBLISHED_MODEL}",), (), 0)
    return VarianceSummary(per_model, by_model, difference, seeds, accuracy, len(runs))
