"""DVC stage `report`: the published table beside the measured figures, as Markdown and self-contained HTML.

Reads the `report` section of params.yaml (and shows the other sections in the report's
environment part), the metrics files of the earlier stages in `--metrics-dir` and the MLflow run their
`mlflow_run.json` names, with the other finished runs of its recipe (seeds, models: a "Seed variance"
section when there are any; the MLflow store is not a DVC dep, so rerun with
`dvc repro --single-item --force report` after an experiment set). Writes `reports/report.md`, `reports/report.html` and
`reports/figures/*.png`, and logs them to that run as artifacts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.reporting import ReportConfig, build_report
from pipelines._stage import ParamError, stage


def run(params: dict, args) -> int:
    start = time.perf_counter()
    try:
        config = ReportConfig.from_params({**params["report"], "metrics_dir": args.metrics_dir})
    except ValueError as err:
        raise ParamError(str(err)) from None
    result = build_report(config, params)
    accuracy = result.accuracy
    reasons = f" ({'; '.join(accuracy.reasons)})" if accuracy.reasons else ""
    runs = f"{accuracy.runs} runs" if accuracy.runs > 1 else "1 run: no interval"
    print(f"report: accuracy: {accuracy.verdict}{reasons}; resting on {runs}")
    if result.variance is not None:
        per_model = ", ".join(f"{m} {len(result.variance.seeds(m))}" for m in result.variance.per_model)
        print(f"report: seed variance over {result.variance.runs} runs of this recipe ({per_model})")
    print(f"report: parameters and MACs at 224: {result.counts_verdict}")
    for note in result.notes:
        print(f"report: {note}")
    seconds = time.perf_counter() - start
    print(f"report: wrote {result.markdown}, {result.html} and {len(result.figures)} figures in {seconds:.0f} s")
    return 0


main = stage("report", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
