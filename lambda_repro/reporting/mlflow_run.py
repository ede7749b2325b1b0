"""The MLflow run of a pipeline run (named in ``metrics/mlflow_run.json``): log into it, read it back.

Writes go through :class:`lambda_repro.tracking.RunTracker` resuming the run (buffered,
never fatal); reads use ``mlflow.search_runs`` and ``MlflowClient``. Every function
returns a problem text instead of raising when the store cannot be used, so a report
still renders from the metrics files and says why MLflow is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class RunRef:
    tracking_uri: str
    experiment: str
    run_id: str


def read_run_ref(path: str | os.PathLike) -> RunRef | None:
    """The run named in ``metrics/mlflow_run.json``; ``None`` when the file is missing or incomplete."""
    try:
        data = json.loads(Path(path).read_text())
        return RunRef(str(data["tracking_uri"]), str(data["experiment"]), str(data["run_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def log_to_run(
    ref: RunRef,
    metrics: dict[str, float] | None = None,
    artifacts: list[tuple[str | os.PathLike, str | None]] = (),
    buffer_dir: str | os.PathLike = "metrics/mlflow_buffer",
) -> str | None:
    """Log ``metrics`` and ``(path, artifact_dir)`` artifacts into the run; returns a problem text or ``None``.

    ``buffer_dir`` keeps what could not be delivered (see :class:`~lambda_repro.tracking.RunTracker`).
    """
    try:
        from lambda_repro.tracking import RunTracker

        tracker = RunTracker(
            ref.tracking_uri, ref.experiment, run_id=ref.run_id, system_metrics=False, buffer_dir=buffer_dir
        )
        tracker.start()
        try:
            if metrics:
                tracker.log_metrics(metrics)
            for path, artifact_dir in artifacts:
                tracker.log_artifact(path, artifact_dir)
        finally:
            tracker.end()
        pending = tracker.pending_records
    except Exception as err:  # the store is optional for every stage that logs here
        return f"MLflow logging failed: {type(err).__name__}: {err}"
    if pending:
        return f"MLflow unreachable: {pending} record(s) kept in the local buffer (lambda-repro mlflow-replay)"
    return None


def search_run(ref: RunRef) -> tuple[pd.DataFrame | None, str | None]:
    """The run as ``mlflow.search_runs`` returns it (one row: ``params.*``, ``metrics.*``, ``tags.*``)."""
    try:
        import mlflow

        mlflow.set_tracking_uri(ref.tracking_uri)
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
