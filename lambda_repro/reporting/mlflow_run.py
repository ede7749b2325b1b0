"""Reading the pipeline's MLflow run back for the report (``mlflow.search_runs``, ``MlflowClient``).

The run pointer and logging into the run are :mod:`lambda_repro.tracking.pipeline_run`'s
(re-exported here). Every function returns a problem text instead of raising when the
store cannot be used, so a report still renders from the metrics files and says why MLflow
is missing; toward an HTTP server
no read retries and each gives up after a few seconds (:mod:`lambda_repro.tracking.http_timeouts`).
"""

from __future__ import annotations

import pandas as pd

from lambda_repro.tracking.http_timeouts import short_http_requests
from lambda_repro.tracking.pipeline_run import RunRef, log_to_run
from lambda_repro.tracking.pipeline_run import read_run_pointer as read_run_ref

__all__ = ["RunRef", "log_to_run", "metric_history", "read_run_ref", "run_params_and_metrics", "search_run"]


def search_run(ref: RunRef) -> tuple[pd.DataFrame | None, str | None]:
    """The run as ``mlflow.search_runs`` returns it (one row: ``params.*``, ``metrics.*``, ``tags.*``)."""
    try:
        import mlflow

        mlflow.set_tracking_uri(ref.tracking_uri)
        with short_http_requests(ref.tracking_uri):
            runs = mlflow.search_runs(
                experiment_names=[ref.experiment], filter_string=f"attributes.run_id = '{ref.run_id}'"
            )
    except Exception as err:
        return None, f"MLflow store unavailable ({type(err).__name__}: {err})"
    if runs.empty:
        return None, f"run {ref.run_id} not found in experiment {ref.experiment!r} at {ref.tracking_uri}"
    return runs, None


def run_params_and_metrics(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables from the search result: the run's params, and its final metrics (system metrics left out)."""
    row = runs.iloc[0]
    params = [(c.removeprefix("params."), row[c]) for c in runs.columns if c.startswith("params.")]
    metrics = [
        (c.removeprefix("metrics."), f"{row[c]:.6g}")
        for c in runs.columns
        if c.startswith("metrics.") and not c.startswith("metrics.system/") and pd.notna(row[c])
    ]
    return (
        pd.DataFrame(sorted(params), columns=["param", "value"]),
        pd.DataFrame(sorted(metrics), columns=["metric", "final value"]),
    )


def metric_history(ref: RunRef, keys: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    """Per-step values of ``keys`` from the run (``MlflowClient.get_metric_history``), one column each, by step."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(ref.tracking_uri)
        columns = {}
        with short_http_requests(ref.tracking_uri):
            for key in keys:
                history = client.get_metric_history(ref.run_id, key)
                if history:
                    columns[key] = pd.Series({m.step: m.value for m in history})
    except Exception as err:
        return None, f"MLflow history unavailable ({type(err).__name__}: {err})"
    if not columns:
        return None, "the run has none of the history metrics"
    frame = pd.DataFrame(columns)
    frame.index.name = "epoch"
    return frame.reset_index(), None
