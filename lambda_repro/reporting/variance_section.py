"""The report's "Seed variance" section: per-model tables, the paired difference, a figure, the verdict on intervals.

Shared by the report stage (:func:`~lambda_repro.reporting.build.build_report`, when MLflow holds
more than one run of the pipeline run's recipe) and ``scripts/variance_report.py`` (one section
per recipe found), so both say the same thing the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lambda_repro.published import PUBLISHED_MODEL, PUBLISHED_TOP1, PUBLISHED_TOP5
from lambda_repro.reporting import figures
from lambda_repro.reporting.comparison import Tolerance
from lambda_repro.reporting.document import Block, Figure, Heading, Paragraph, Table
from lambda_repro.reporting.variance import BASELINE_MODEL, Interval, VarianceSummary

TITLE = "Seed variance"
METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
NO_DIFFERENCE = "no difference shown (the interval contains 0)"
ONE_SEED = "one seed: no interval"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def interval_text(interval: Interval) -> str:
    """``[76.09, 78.71]``, or ``- (1 run)`` where there is no interval."""
    return "- (1 run)" if interval.n == 1 else f"[{interval.low:.2f}, {interval.high:.2f}]"


def sd_text(interval: Interval) -> str:
    return "-" if math.isnan(interval.std) else f"{interval.std:.2f}"


def difference_meaning(interval: Interval) -> str:
    """What a paired interval says: ``one seed: no interval``, ``... better``, or ``no difference shown``."""
    if interval.n == 1:
        return ONE_SEED
    if interval.low > 0:
        return f"{PUBLISHED_MODEL} better"
    if interval.high < 0:
        return f"{BASELINE_MODEL} better"
    return NO_DIFFERENCE


def rests_on(runs: int, model: str, seeds: tuple[int, ...] = ()) -> str:
    """``rests on 1 run: no interval`` / ``rests on 3 runs of lambda_resnet50 (seeds 0, 1, 2)``."""
    if runs <= 1:
        return "rests on 1 run: no interval"
    shown = f" (seeds {', '.join(map(str, seeds))})" if seeds else ""
    return f"rests on {runs} runs of {model}{shown}"


def model_table(summary: VarianceSummary, model: str) -> pd.DataFrame:
    rows = []
    for metric, interval in summary.per_model[model].items():
        by_seed = summary.values[model][metric]
        rows.append(
            {
                "metric": METRIC_NAMES[metric],
                "runs": interval.n,
                "mean": f"{interval.mean:.2f}",
                "sd": sd_text(interval),
                "95% interval": interval_text(interval),
                "per seed": ", ".join(f"{seed}: {value:.2f}" for seed, value in by_seed.items()),
            }
        )
    return pd.DataFrame(rows)


def difference_table(summary: VarianceSummary) -> pd.DataFrame:
    rows = []
    for metric, interval in summary.difference.items():
        rows.append(
            {
                "metric": METRIC_NAMES[metric],
                "seeds": interval.n,
                "mean difference": f"{interval.mean:+.2f}",
                "sd": sd_text(interval),
                "95% interval": interval_text(interval),
                "per seed": ", ".join(f"{s}: {v:+.2f}" for s, v in summary.paired_values(metric).items()),
                "meaning": difference_meaning(interval),
            }
        )
    return pd.DataFrame(rows)


def published_verdict_text(summary: VarianceSummary, tolerance: Tolerance) -> str:
    """``Published table: NOT COMPARABLE (rests on 3 runs of lambda_resnet50): reasons.``"""
    accuracy = summary.accuracy
    rests = rests_on(accuracy.runs, PUBLISHED_MODEL, accuracy.seeds) if accuracy.metrics else "no run"
    if accuracy.reasons:
        return f"Published table: {accuracy.verdict.upper()} ({rests}): {'; '.join(accuracy.reasons)}."
    rule = (
        "published figure within the 95% interval widened by the tolerance"
        if accuracy.runs > 1
        else "|measured - published| within the tolerance"
    )
    per_metric = ", ".join(f"{METRIC_NAMES[row.name]}: {row.verdict}" for row in accuracy.metrics)
    return (
        f"Published table: {accuracy.verdict.upper()} ({rests}; {rule}, {tolerance.top1:g} top-1, "
        f"{tolerance.top5:g} top-5; {per_metric})."
    )


def variance_blocks(
    summary: VarianceSummary,
    recipe: str,
    tolerance: Tolerance,
    figure_path: Path,
    figure_href: str,
    drawn: list[Path],
    title: str = TITLE,
) -> list[Block]:
    """The section over the runs of one recipe (``recipe``: its description); draws the figure into ``figure_path``."""
    blocks: list[Block] = [
        Heading(title),
        Paragraph(
            f"{plural(summary.runs, 'run')} of this recipe in MLflow ({recipe}), one per model and seed (a rerun "
            "counts once: the latest). Runs are pooled only when they agree on the commit, the dataset and every "
            "data / train / evaluate / model setting but the model's name and the seed "
            "(lambda_repro/reporting/recipe_key.py). Per model: the mean, the sample standard deviation (sd) and "
            "the 95% t-interval of the mean (t with n - 1 degrees of freedom); one run has no interval."
        ),
    ]
    for model in summary.per_model:
        seeds = summary.seeds(model)
        caption = f"{model}: {plural(len(seeds), 'run')}, seed{'s' if len(seeds) != 1 else ''} " + ", ".join(
            map(str, seeds)
        )
        blocks.append(Table(model_table(summary, model), caption))
    if summary.difference:
        caption = (
            f"{PUBLISHED_MODEL} - {BASELINE_MODEL}, paired by seed ({plural(len(summary.paired_seeds), 'seed')}: "
            f"{', '.join(map(str, summary.paired_seeds))}; the same seed draws the same data subset and order)"
        )
        blocks.append(Table(difference_table(summary), caption))
    else:
        blocks.append(
            Paragraph(
                f"No paired difference: it needs runs of {PUBLISHED_MODEL} and {BASELINE_MODEL} with a common seed."
            )
        )
    comparable = summary.accuracy.comparable
    path = figures.seed_variance(
        summary.values,
        summary.per_model,
        {m: summary.paired_values(m) for m in summary.difference},
        summary.difference,
        figure_path,
        {"top1": PUBLISHED_TOP1, "top5": PUBLISHED_TOP5} if comparable else None,
        f"{PUBLISHED_MODEL} - {BASELINE_MODEL}, per seed",
    )
    drawn.append(path)
    blocks.append(Figure(path, figure_href, "Top-1 / top-5 per seed, mean and 95% interval per model"))
    blocks.append(Paragraph(published_verdict_text(summary, tolerance)))
    return blocks
