"""The pipeline's MLflow run: the pointer file the train stage writes (``mlflow_run.json``), and logging into it.

The train stage opens the run and writes the pointer; every later stage reads it here to log
into the same run. Logging is never fatal: :func:`log_to_run` returns a problem text instead
of raising when the store cannot be used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RUN_POINTER_NAME = "mlflow_run.json"  # in the metrics folder, beside the stages' metrics files


@dataclass(frozen=True)
class RunRef:
    tracking_uri: str
    experiment: str
    run_id: str


def write_run_pointer(path: str | os.PathLike, tracking_uri: str, experiment: str, run_id: str | None) -> None:
    """Name the run later stages log into (``run_id`` None: tracking was unavailable); written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pointer = {"tracking_uri": tracking_uri, "experiment": experiment, "run_id": run_id}
    tmp.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_run_pointer(path: str | os.PathLike) -> RunRef | None:
    """The run the pointer at ``path`` names; ``None`` when the file is missing, incomplete or names no run."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data["run_id"] is None:
            return None
        return RunRef(str(data["tracking_uri"]), str(data["experiment"]), str(data["run_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def log_to_run(
    ref: RunRef,
    metrics: dict[str, float] | None = None,
    artifacts: list[tuple[str | os.PathLike, str | None]] = (),
    buffer_dir: str | os.PathLike = "metrics/mlflow_buffer",
    params: dict | None = None,
    tags: dict | None = None,
) -> str | None:
    """Log ``params``, ``tags``, ``metrics`` and ``(path, artifact_dir)`` artifacts into the run; a problem or ``None``.

    ``buffer_dir`` keeps what could not be delivered (see :class:`~lambda_repro.tracking.RunTracker`).
    """
    try:
        from lambda_repro.tracking.run_tracker import RunTracker

        tracker = RunTracker(
            ref.tracking_uri, ref.experiment, run_id=ref.run_id, system_metrics=False, buffer_dir=buffer_dir
        )
        tracker.start()
        try:
            if params:
                tracker.log_params(params)
            if tags:
                tracker.set_tags(tags)
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
