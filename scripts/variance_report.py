"""The variance-aware report over experiment sets (seeds x models), from the MLflow runs, one section per recipe.

The same analysis the report stage puts in its "Seed variance" section (for the pipeline run's
own recipe), here for every recipe found: per model mean, standard deviation and 95% t-interval
of top-1 / top-5; lambda_resnet50 minus resnet50 paired by seed; the published-table verdict on
the interval, with the number of runs it rests on (rules: lambda_repro/reporting/variance.py;
which runs are one recipe: lambda_repro/reporting/recipe_key.py). Writes
``<output-dir>/variance.md``, a self-contained ``variance.html`` and ``figures/*.png``, and prints
the Markdown.

Usage::

    python3 scripts/variance_report.py                  # the finished runs of the current commit (HEAD)
    python3 scripts/variance_report.py --commit abc123  # of another commit
    python3 scripts/variance_report.py --all            # every commit (each its own recipe)
    python3 scripts/variance_report.py --all --any-commit   # pool runs of several commits (the code may differ)
    python3 scripts/variance_report.py --tracking-uri sqlite:////path/to/mlflow.db --output-dir /tmp/variance
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_repro.config import load_effective_params  # noqa: E402
from lambda_repro.reporting.comparison import Tolerance  # noqa: E402
from lambda_repro.reporting.document import Block, Paragraph  # noqa: E402
from lambda_repro.reporting.experiment_runs import group_by_recipe, search_finished_runs  # noqa: E402
from lambda_repro.reporting.render_html import render_html  # noqa: E402
from lambda_repro.reporting.render_markdown import render_markdown  # noqa: E402
from lambda_repro.reporting.variance import summarize  # noqa: E402
from lambda_repro.reporting.variance_section import plural, variance_blocks  # noqa: E402
from lambda_repro.tracking import resolve_tracking_uri  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="tracking and report settings (default: params.yaml)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else tracking.uri)")
    parser.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--commit", help="the commit the runs ran from (default: HEAD)")
    which.add_argument("--all", action="store_true", help="the runs of every commit")
    parser.add_argument(
        "--any-commit", action="store_true", help="pool runs of different commits (otherwise each is its own recipe)"
    )
    parser.add_argument("--output-dir", default="reports/variance", type=Path)
    args = parser.parse_args(argv)
    params = load_effective_params(args.params)
    report, tracking = params["report"], params["tracking"]
    tolerance = Tolerance(report["top1_tolerance"], report["top5_tolerance"], report["min_epochs"])
    uri = args.tracking_uri or resolve_tracking_uri(tracking["uri"])
    experiment = args.experiment or tracking["experiment"]
    commit = None if args.all else (args.commit or _head())
    try:
        frame = search_finished_runs(uri, experiment, commit)
    except Exception as err:
        print(f"variance_report: MLflow store {uri} unavailable: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    groups = group_by_recipe(frame, with_commit=not args.any_commit)
    if not groups:
        where = f"of commit {commit}" if commit else "at all"
        print(f"variance_report: no finished, evaluated run {where} in {experiment!r} at {uri}", file=sys.stderr)
        return 1

    args.output_dir.mkdir(parents=True, exist_ok=True)
    drawn: list[Path] = []
    scope = f"commit {commit[:10]}" if commit else "every commit"
    blocks: list[Block] = [
        Paragraph(
            f"MLflow store {uri}, experiment {experiment!r}, {scope}: {plural(len(frame), 'finished run')}, "
            f"{plural(len(groups), 'recipe')} (the latest first)"
            + (" (runs of different commits pooled: their code may differ)." if args.any_commit else ".")
        )
    ]
    for number, group in enumerate(groups, start=1):
        summary = summarize(group.runs, tolerance)
        name = f"seed_variance_{number}.png"
        title = f"Recipe {number}: {group.key.describe()}"
        blocks += variance_blocks(
            summary,
            group.key.describe(),
            tolerance,
            args.output_dir / "figures" / name,
            f"figures/{name}",
            drawn,
            title,
        )
        blocks.append(Paragraph("Runs: " + ", ".join(run.name or run.run_id for run in group.runs) + "."))
    title = "Accuracy over seeds"
    markdown = render_markdown(title, blocks)
    (args.output_dir / "variance.md").write_text(markdown, encoding="utf-8")
    (args.output_dir / "variance.html").write_text(render_html(title, blocks), encoding="utf-8")
    print(markdown)
    print(f"variance_report: wrote {args.output_dir / 'variance.md'}, variance.html and {plural(len(drawn), 'figure')}")
    return 0


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
