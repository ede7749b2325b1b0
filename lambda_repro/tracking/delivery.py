"""Sending one buffered record to MLflow. Shared by the live tracker and the replay."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from lambda_repro.tracking.params import MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS, truncate
from lambda_repro.tracking.uri import artifact_location

# Tag on every run the tracker creates: the id the caller was given. When MLflow was
# unreachable at start that id is local; a later resume or replay finds the run by it.
LOCAL_RUN_ID_TAG = "lambda_repro.local_run_id"
# MLflow 3's UI shows an experiment of this kind as training runs (the run list, metric charts), not as
# a GenAI app (traces, an overview of judges); its values are the UI's ExperimentKind enum.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
BATCH_SIZE = 100  # MLflow's limit of params / tags per log_batch
MAX_METRICS_PER_BATCH = 1000

# MLflow refused the record itself (a param changed its value on resume, ...): sending it
# again cannot help, so it must not block the records behind it.
_REJECTION_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST", "INVALID_STATE"}


def is_rejection(err: BaseException) -> bool:
    return isinstance(err, MlflowException) and err.error_code in _REJECTION_CODES


def now_ms() -> int:
    return int(time.time() * 1000)


def open_run(client: MlflowClient, tracking_uri: str, record: dict[str, Any]) -> str:
    """Deliver a ``start`` record: resume the requested run, or the one made for its local id, or create one."""
    experiment_id = ensure_experiment(client, tracking_uri, record["experiment"])
    requested = record.get("run_id")
    run_id = None
    if requested:
        try:
            run_id = client.get_run(requested).info.run_id
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    if run_id is None:
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{LOCAL_RUN_ID_TAG}` = '{record['local_run_id']}'",
            max_results=1,
        )
        run_id = found[0].info.run_id if found else None
    if run_id is None:
        tags = {**record.get("tags", {}), LOCAL_RUN_ID_TAG: record["local_run_id"]}
        run = client.create_run(experiment_id, start_time=record["time_ms"], tags=tags, run_name=record.get("run_name"))
        return run.info.run_id
    if client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    if record.get("tags"):
        _log_batch(client, run_id, tags=record["tags"])
    return run_id


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The experiment's id, creating it as a model-training experiment (see :data:`EXPERIMENT_KIND`)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the kind was set, or by someone else
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location(tracking_uri, name), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except MlflowException as err:
        # Another process created it between the lookup and here.
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def deliver(client: MlflowClient, run_id: str, record: dict[str, Any], artifact: Path | None = None) -> None:
    """Send one non-``start`` record to run ``run_id``; ``artifact`` is the file to send for an ``artifact`` record."""
    op = record["op"]
    if op == "params":
        _log_batch(client, run_id, params=record["params"])
    elif op == "metrics":
        step = record["step"] if record["step"] is not None else 0
        metrics = [Metric(key, float(value), record["timestamp"], step) for key, value in record["metrics"].items()]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    elif op == "tags":
        _log_batch(client, run_id, tags=record["tags"])
    elif op == "artifact":
        path = Path(artifact if artifact is not None else record["path"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), record["artifact_path"])
        else:
            client.log_artifact(run_id, str(path), record["artifact_path"])
    elif op == "event":
        deliver_event(client, run_id, record)
    elif op == "end":
        client.set_terminated(run_id, status=record["status"], end_time=record["timestamp"])
    else:
        raise ValueError(f"unknown buffered record op {op!r} (seq {record['seq']})")


def deliver_event(client: MlflowClient, run_id: str, record: dict[str, Any]) -> None:
    """An event is a tag (visible in the run list) and a text artifact (the whole message)."""
    name, step = record["name"], record["step"]
    tags = {f"event.{name}": record["message"]}
    if step is not None:
        tags[f"event.{name}.step"] = str(step)
    _log_batch(client, run_id, tags=tags)
    suffix = f"_step{step}" if step is not None else ""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record["timestamp"] / 1000))
    text = f"event: {name}\nstep: {step}\ntime: {stamp}\n\n{record['message']}\n"
    client.log_text(run_id, text, f"events/{name}{suffix}.txt")


def _log_batch(
    client: MlflowClient, run_id: str, params: dict[str, str] | None = None, tags: dict[str, str] | None = None
) -> None:
    params_list = [Param(k, truncate(str(v), MAX_PARAM_VALUE_CHARS)) for k, v in (params or {}).items()]
    tags_list = [RunTag(k, truncate(str(v), MAX_TAG_VALUE_CHARS)) for k, v in (tags or {}).items()]
    for start in range(0, len(params_list), BATCH_SIZE):
        client.log_batch(run_id, params=params_list[start : start + BATCH_SIZE])
    for start in range(0, len(tags_list), BATCH_SIZE):
        client.log_batch(run_id, tags=tags_list[start : start + BATCH_SIZE])
