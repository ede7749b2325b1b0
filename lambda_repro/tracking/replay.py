"""Loading what a tracker could not deliver into MLflow, later (``lambda-repro mlflow-replay``)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from lambda_repro.tracking.buffer import sessions
from lambda_repro.tracking.delivery import deliver, is_rejection, open_run
from lambda_repro.tracking.run_tracker import TrackingRejectedWarning
from lambda_repro.tracking.uri import resolve_tracking_uri


@dataclass
class ReplaySummary:
    delivered: int = 0
    rejected: int = 0
    runs: dict[str, str] = field(default_factory=dict)  # session -> MLflow run id
    missing_artifacts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"delivered {self.delivered} record(s) in {len(self.runs)} run(s); rejected {self.rejected}"]
        lines += [f"  {session} -> run {run_id}" for session, run_id in self.runs.items()]
        lines += [f"  artifact missing, not loaded: {path}" for path in self.missing_artifacts]
        return "\n".join(lines)


def replay_buffer(
    buffer_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    *,
    include_delivered: bool = False,
) -> ReplaySummary:
    """Send every undelivered record in ``buffer_dir`` to MLflow; marks them so a second replay sends nothing.

    Args:
        buffer_dir: a tracker's ``buffer_dir``.
        tracking_uri: where to load into; default: ``MLFLOW_TRACKING_URI``, else the URI
            each run was started with.
        include_delivered: also send what already reached MLflow (to load a run into a
            different, fresh store).

    Runs that never reached MLflow are created (tagged ``lambda_repro.local_run_id``);
    runs that did are continued. A store that cannot be reached raises: nothing is marked
    delivered that was not, so the replay can simply be run again.
    """
    directory = Path(buffer_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"MLflow buffer directory not found: {directory}")
    summary = ReplaySummary()
    for buffer in sessions(directory):
        records = buffer.records()
        delivered = buffer.delivered()
        todo = [r for r in records if include_delivered or r["seq"] not in delivered]
        if not todo or records[0]["op"] != "start":
            continue
        start = records[0]
        uri = tracking_uri or resolve_tracking_uri(start["tracking_uri"])
        client = MlflowClient(uri)
        if start["seq"] in delivered and not include_delivered and "run_id" in delivered[start["seq"]]:
            run_id = delivered[start["seq"]]["run_id"]
        else:
            run_id = open_run(client, uri, start)
            buffer.mark_delivered(start["seq"], run_id=run_id)
            summary.delivered += 1
        summary.runs[buffer.session] = run_id
        for record in todo:
            if record["op"] == "start":
                continue
            artifact = None
            if record["op"] == "artifact":
                artifact = buffer.stashed_artifact(record["seq"]) or Path(record["path"])
                if not artifact.exists():
                    summary.missing_artifacts.append(record["path"])
                    continue
            try:
                deliver(client, run_id, record, artifact=artifact)
            except Exception as err:
                if not is_rejection(err):
                    raise
                warnings.warn(
                    f"MLflow refused {record['op']} record {record['seq']} of {buffer.session}: "
                    f"{str(err).splitlines()[0]}",
                    TrackingRejectedWarning,
                    stacklevel=2,
                )
                buffer.mark_delivered(record["seq"], rejected=str(err).splitlines()[0])
                summary.rejected += 1
                continue
            buffer.mark_delivered(record["seq"], run_id=run_id)
            summary.delivered += 1
    return summary
