"""A verdict that knows seed noise: over the runs of an experiment set (seeds x models), per model the
mean, standard deviation and 95% t-interval of top-1 / top-5; lambda_resnet50 minus resnet50 paired by
seed; and the published-table verdict taken on the interval.

Verdict rule on an interval (``[low, high]`` the 95% interval of the mean, ``tol`` the tolerance):

* ``reproduced``: the published figure lies within ``[low - tol, high + tol]`` for top-1 and top-5;
* ``below published``: ``high + tol`` is below it for either;
* ``above published``: ``low - tol`` is above it for either, and none is below.

One run has no interval: it is then the point itself (the single-run rule of
:mod:`~lambda_repro.reporting.comparison`). Pure functions: where the runs come from
(MLflow, ``dvc exp show``) is the caller's business.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from scipy import stats

from lambda_repro.published import PUBLISHED_MODEL, PUBLISHED_TOP1, PUBLISHED_TOP5
from lambda_repro.reporting.comparison import (
    ABOVE,
    BELOW,
    NOT_COMPARABLE,
    REPRODUCED,
    Tolerance,
    comparability_problems,
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


@dataclass(frozen=True)
class VarianceSummary:
    per_model: dict[str, dict[str, Interval]]  # model -> metric -> interval
    difference: dict[str, Interval]  # metric -> interval of PUBLISHED_MODEL - BASELINE_MODEL, paired by seed
    paired_seeds: tuple[int, ...]
    verdict: str
    verdict_reasons: tuple[str, ...]
    verdict_runs: int
    metric_verdicts: dict[str, str] = field(default_factory=dict)

    @property
    def reasons_text(self) -> str:
        return "; ".join(self.verdict_reasons)


def latest_per_model_and_seed(runs: list[RunScore]) -> list[RunScore]:
    """One run per (model, seed): the last one given (pass runs oldest first)."""
    kept: dict[tuple[str, int], RunScore] = {}
    for run in runs:
        kept[(run.model, run.seed)] = run
    return list(kept.values())


def summarize(runs: list[RunScore], tolerance: Tolerance | None = None, confidence: float = 0.95) -> VarianceSummary:
    """Intervals per model, the paired difference, and the published verdict on the intervals."""
    tolerance = tolerance or Tolerance()
    runs = latest_per_model_and_seed(runs)
    by_model: dict[str, dict[str, dict[int, float]]] = {}
    for run in runs:
        for metric in METRICS:
            value = run.scores.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                by_model.setdefault(run.model, {}).setdefault(metric, {})[run.seed] = float(value)
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
    reasons: list[str] = []
    for run in published_runs:
        for problem in comparability_problems(run.scores, None, tolerance):
            if problem not in reasons:
                reasons.append(problem)
    if not published_runs:
        reasons.append(f"no run of {PUBLISHED_MODEL}")
    metric_verdicts: dict[str, str] = {}
    if reasons:
        verdict = NOT_COMPARABLE
    else:
        published = {"top1": PUBLISHED_TOP1, "top5": PUBLISHED_TOP5}
        tolerances = {"top1": tolerance.top1, "top5": tolerance.top5}
        for metric in METRICS:
            metric_verdicts[metric] = interval_verdict(
                per_model[PUBLISHED_MODEL][metric], published[metric], tolerances[metric]
            )
        found = set(metric_verdicts.values())
        verdict = BELOW if BELOW in found else ABOVE if ABOVE in found else REPRODUCED
    return VarianceSummary(per_model, difference, seeds, verdict, tuple(reasons), len(published_runs), metric_verdicts)


def _shown(interval: Interval) -> tuple[str, str, str]:
    std = "-" if math.isnan(interval.std) else f"{interval.std:.2f}"
    ci = "- (one run)" if interval.n == 1 else f"[{interval.low:.2f}, {interval.high:.2f}]"
    return f"{interval.mean:.2f}", std, ci


def render_markdown(summary: VarianceSummary, tolerance: Tolerance | None = None) -> str:
    """The variance section: a table per model, the paired difference, and the verdict with its run count."""
    tolerance = tolerance or Tolerance()
    lines = [
        "## Accuracy over seeds (95% t-intervals of the mean)",
        "",
        "| model | runs | top-1 mean | top-1 std | top-1 95% interval | top-5 mean | top-5 std | top-5 95% interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, metrics in summary.per_model.items():
        top1, top5 = metrics.get("top1"), metrics.get("top5")
        cells = [*(_shown(top1) if top1 else ("-",) * 3), *(_shown(top5) if top5 else ("-",) * 3)]
        lines.append(f"| {model} | {top1.n if top1 else 0} | " + " | ".join(cells) + " |")
    lines.append("")
    if summary.difference:
        lines.append(
            f"**{PUBLISHED_MODEL} - {BASELINE_MODEL}**, paired by seed "
            f"({len(summary.paired_seeds)} seed{'s' if len(summary.paired_seeds) != 1 else ''}: "
            f"{', '.join(map(str, summary.paired_seeds))}):"
        )
        lines.append("")
        for metric, interval in summary.difference.items():
            name = "top-1" if metric == "top1" else "top-5"
            mean, std, ci = _shown(interval)
            if interval.n == 1:
                meaning = "one seed: no interval"
            elif interval.low > 0:
                meaning = f"{PUBLISHED_MODEL} better"
            elif interval.high < 0:
                meaning = f"{BASELINE_MODEL} better"
            else:
                meaning = "no difference shown (the interval contains 0)"
            lines.append(f"- {name}: {float(mean):+.2f} points, std {std}, 95% interval {ci}: {meaning}")
        lines.append("")
    rests = f"rests on {summary.verdict_runs} run{'s' if summary.verdict_runs != 1 else ''} of {PUBLISHED_MODEL}"
    if summary.reasons_text:
        lines.append(f"**Published table: {summary.verdict.upper()}** ({rests}): {summary.reasons_text}.")
    else:
        rule = (
            f"published figure within the 95% interval widened by the tolerance "
            f"({tolerance.top1:g} top-1, {tolerance.top5:g} top-5)"
        )
        per_metric = ", ".join(f"{m}: {v}" for m, v in summary.metric_verdicts.items())
        lines.append(f"**Published table: {summary.verdict.upper()}** ({rests}; {rule}; {per_metric}).")
    return "\n".join(lines) + "\n"
