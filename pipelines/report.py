"""DVC stage `report`: the published table beside the measured figures, as Markdown and self-contained HTML.

Reads the `report` section of params.yaml (and shows the other sections in the report's
environment part), the metrics files of the earlier stages and the MLflow run named in
`metrics/mlflow_run.json`. Writes `reports/report.md`, `reports/report.html` and
`reports/figures/*.png`, and logs them to that run as artifacts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if not __package__:  # run as `python pipelines/report.py`: make `pipelines` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_repro.reporting import ReportConfig, build_report
from pipelines._params import ParamError, fail, load_checked


def main() -> int:
    start = time.perf_counter()
    try:
        params = load_checked("params.yaml", "report")
        config = ReportConfig.from_params(params["report"])
    except (ParamError, ValueError, KeyError) as err:
        return fail("report", str(err))
    result = build_report(config, params)
    accuracy = result.accuracy
    reasons = f" ({'; '.join(accuracy.reasons)})" if accuracy.reasons else ""
    print(f"report: accuracy: {accuracy.verdict}{reasons}")
    print(f"report: parameters and MACs at 224: {result.counts_verdict}")
    for note in result.notes:
        print(f"report: {note}")
    seconds = time.perf_counter() - start
    print(f"report: wrote {result.markdown}, {result.html} and {len(result.figures)} figures in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
