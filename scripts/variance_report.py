"""The variance-aware report over an experiment set (seeds x models), from the MLflow runs.

Per model: mean, standard deviation and 95% t-interval of top-1 / top-5; lambda_resnet50 minus
resnet50 paired by seed; the published-table verdict on the interval, with the number of runs
it rests on (rules: lambda_repro/reporting/variance.py). Writes Markdown (default
reports/variance.md) and prints it.

Usage::

    python scripts/variance_report.py                   # the experiments of the current commit (HEAD)
    python scripts/variance_report.py --baseline-rev abc123 --output reports/variance.md
    python scripts/variance_report.py --all              # every finished, evaluated run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_repro.config import load_effective_params  # noqa: E402
from lambda_repro.reporting.comparison import Tolerance  # noqa: E402
from lambda_repro.reporting.experiment_runs import runs_from_mlflow  # noqa: E402
from lambda_repro.reporting.variance import render_markdown, summarize  # noqa: E402
from lambda_repro.tracking import resolve_tracking_uri  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="tracking and report settings (default: params.yaml)")
    parser.add_argument("--baseline-rev", help="the commit the experiments ran from (default: HEAD)")
    parser.add_argument("--all", action="store_true", help="every finished, evaluated run of the experiment")
    parser.add_argument("--output", default="reports/variance.md", type=Path)
    args = parser.parse_args(argv)
    params = load_effective_params(args.params)
    rev = None
    if not args.all:
        rev = (
            args.baseline_rev
            or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        )
    report = params["report"]
    tolerance = Tolerance(report["top1_tolerance"], report["top5_tolerance"], report["min_epochs"])
    tracking = params["tracking"]
    runs = runs_from_mlflow(resolve_tracking_uri(tracking["uri"]), tracking["experiment"], rev)
    if not runs:
        which = f"with tag dvc.baseline_rev = {rev}" if rev else "at all"
        print(f"variance_report: no finished, evaluated run {which} (run the experiments first)", file=sys.stderr)
        return 1
    header = f"# Experiment set: {len(runs)} runs" + (f" from commit {rev[:10]}" if rev else "") + "\n\n"
    text = header + render_markdown(summarize(runs, tolerance), tolerance)
    text += "\nRuns: " + ", ".join(run.name for run in runs) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
