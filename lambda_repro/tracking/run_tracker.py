"""RunTracker: log one run to MLflow without ever losing a record or stopping training.

Every call is first appended to a local buffer (see :mod:`lambda_repro.tracking.buffer`),
then sent to MLflow. When MLflow cannot be reached (at start or mid-run) the tracker
warns once, keeps buffering, and tries again at most every ``retry_interval_s``; whatever
is still undelivered at the end loads later with :func:`replay_buffer` /
``lambda-repro mlflow-replay``. Log from one process only (DDP rank 0): each tracker
makes or resumes one run.

For an HTTP server the tracker lowers MLflow's request retries and timeout while the run
is open (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``, unless the
user set them), so an unreachable server costs seconds, not minutes; they are restored
by :meth:`RunTracker.end`. These are process-wide environment variables (MLflow reads
no per-client setting), which is harmless in a training process whose only MLflow user is
the tracker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from lambda_repro.tracking.buffer import RecordBuffer, new_session_name
from lambda_repro.tracking.delivery import deliver, is_rejection, now_ms, open_run
from lambda_repro.tracking.http_timeouts import lower_http_timeouts, restore_http_timeouts
from lambda_repro.tracking.params import MAX_PARAM_VALUE_CHARS, flatten_params
from lambda_repro.tracking.system_metrics import nvml_status, start_system_metrics

_logger = logging.getLogger(__name__)

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


class TrackingUnavailableWarning(RuntimeWarning):
    """MLflow could not be reached; records are kept in the local buffer."""


class TrackingRejectedWarning(RuntimeWarning):
    """MLflow refused one record (e.g. a param whose value changed on resume); the others go on."""


class RunTracker:
    """One MLflow run, logged through a local buffer.

    Args:
        tracking_uri: MLflow store (``sqlite:///mlflow.db``, ``http://127.0.0.1:5000``);
            see :func:`resolve_tracking_uri` for the env override.
        experiment: experiment name; created if missing, with an explicit artifact
            location (``mlartifacts/<experiment>`` beside a SQLite database).
        run_name, tags: of a new run (tags are also set on a resumed one).
        buffer_dir: where the local record of every call is kept.
        system_metrics: sample CPU / memory / disk / network (and GPUs when NVML works)
            with MLflow's monitor every ``system_metrics_interval_s`` seconds. These
            samples go straight to MLflow, not through the buffer.
        run_id: resume this run (e.g. after a restart) instead of creating one.
        retry_interval_s: after a failure, the least time before MLflow is tried again.
        http_timeout_s: per-request timeout toward an HTTP server.

    Use as a context manager, or call :meth:`start` and :meth:`end` yourself::

        with RunTracker("sqlite:///mlflow.db", "lambda-repro", tags=git_tags()) as tracker:
            tracker.log_params(params)
            tracker.log_metrics({"train_loss": 0.7}, step=1)
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str | None = None,
        tags: dict[str, Any] | None = None,
        buffer_dir: str | os.PathLike = "metrics/mlflow_buffer",
        system_metrics: bool = True,
        system_metrics_interval_s: float = 10,
        run_id: str | None = None,
        *,
        retry_interval_s: float = 30.0,
        http_timeout_s: int = 5,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.buffer_dir = Path(buffer_dir)
        self.system_metrics = system_metrics
        self.system_metrics_interval_s = system_metrics_interval_s
        self.requested_run_id = run_id
        self.retry_interval_s = retry_interval_s
        self.http_timeout_s = http_timeout_s

        self.run_id: str | None = None  # what start() returned: MLflow's id, or a local one while unreachable
        self.mlflow_run_id: str | None = None  # the run in MLflow, once it exists there
        self.buffer: RecordBuffer | None = None
        self._client = MlflowClient(tracking_uri)
        self._pending: list[dict[str, Any]] = []
        self._offline_since: float | None = None
        self._warned_unavailable = False
        self._monitor = None
        self._saved_env: list[str] = []  # the MLflow HTTP variables this tracker set
        self._lock = threading.Lock()
        self._ended = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> str:
        """Create (or resume) the run; returns its id. Never raises for an unreachable MLflow.

        While MLflow is unreachable the id is a local one (same format as MLflow's); the
        run made for it later carries it in the ``lambda_repro.local_run_id`` tag, and
        ``RunTracker(run_id=<local id>)`` resumes that run.
        """
        if self.buffer is not None:
            raise RuntimeError("RunTracker.start() called twice")
        self._lower_http_timeouts()
        self.buffer = RecordBuffer(self.buffer_dir, new_session_name())
        self.run_id = self.requested_run_id or uuid.uuid4().hex
        record = {
            "op": "start",
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "run_name": self.run_name,
            "tags": self.tags,
            "run_id": self.requested_run_id,
            "local_run_id": self.run_id,
            "time_ms": now_ms(),
        }
        with self._lock:
            self._record(record)
        if self.mlflow_run_id is not None:
            self.run_id = self.mlflow_run_id
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``status`` (FINISHED, FAILED or KILLED); a second call does nothing."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        if self._ended or self.buffer is None:
            return
        if self._monitor is not None:
            # Before the run is terminated: the monitor stops itself once the run is not RUNNING.
            self._monitor.finish()
            self._monitor = None
        with self._lock:
            self._offline_since = None  # one last attempt, whatever the retry interval
            self._record({"op": "end", "status": status, "timestamp": now_ms()})
            self._ended = True
        self._restore_http_timeouts()
        if self._pending:
            _logger.warning(
                "%d MLflow record(s) of run %s are only in %s; load them with: lambda-repro mlflow-replay %s",
                len(self._pending),
                self.run_id,
                self.buffer.records_path,
                self.buffer_dir,
            )

    def __enter__(self) -> RunTracker:
        if self.buffer is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or (issubclass(exc_type, SystemExit) and exc.code in (0, None)):
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt | SystemExit):
            self.end("KILLED")
        else:
            self.end("FAILED")

    # -- logging -----------------------------------------------------------------------

    def log_params(self, params: dict[str, Any]) -> None:
        """Nested dicts are flattened with dots (``train.base_lr``); values become text (cut at 6000 chars)."""
        flat = flatten_params(params)
        for key, value in flat.items():
            if len(value) > MAX_PARAM_VALUE_CHARS:
                warnings.warn(
                    f"param {key}: value of {len(value)} chars cut to MLflow's limit of {MAX_PARAM_VALUE_CHARS}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self._log({"op": "params", "params": flat})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {}
        for key, value in metrics.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"metric {key!r}: must be a number, got {value!r}") from None
        self._log({"op": "metrics", "metrics": values, "step": step, "timestamp": now_ms()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._log({"op": "tags", "tags": {str(k): str(v) for k, v in tags.items()}})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Log a file or a directory (copied into the buffer if MLflow cannot take it now)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact not found: {path}")
        self._log({"op": "artifact", "path": str(path.resolve()), "artifact_path": artifact_path})

    def log_event(self, name: str, message: str, step: int | None = None) -> None:
        """Record something that happened (e.g. ``non_finite_loss``): tag ``event.<name>`` + ``events/<name>.txt``."""
        self._log({"op": "event", "name": name, "message": str(message), "step": step, "timestamp": now_ms()})

    @property
    def pending_records(self) -> int:
        """Records not (yet) in MLflow: they are in the buffer."""
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.buffer is None:
            raise RuntimeError("RunTracker: call start() (or use it as a context manager) before logging")
        if self._ended:
            raise RuntimeError(f"RunTracker: run {self.run_id} has ended; start a new tracker to log more")
        with self._lock:
            self._record(record)

    def _record(self, record: dict[str, Any]) -> None:
        record = self.buffer.append(record)
        if record["op"] == "artifact":
            record["stash"] = None
        self._pending.append(record)
        self._flush()

    def _flush(self) -> None:
        """Send pending records in order; stop at the first failure and fall back to buffering."""
        if self._offline_since is not None and time.monotonic() - self._offline_since < self.retry_interval_s:
            self._stash_pending_artifacts()
            return
        while self._pending:
            record = self._pending[0]
            try:
                self._deliver(record)
            except Exception as err:
                if not is_rejection(err):
                    self._go_offline(err)
                    return
                warnings.warn(
                    f"MLflow refused {record['op']} record {record['seq']} of run {self.run_id}: "
                    f"{str(err).splitlines()[0]}",
                    TrackingRejectedWarning,
                    stacklevel=4,
                )
                self.buffer.mark_delivered(record["seq"], rejected=str(err).splitlines()[0])
            else:
                self.buffer.mark_delivered(record["seq"], run_id=self.mlflow_run_id)
            self._pending.pop(0)
        if self._offline_since is not None:
            _logger.info("MLflow at %s is reachable again; buffered records delivered", self.tracking_uri)
        self._offline_since = None

    def _deliver(self, record: dict[str, Any]) -> None:
        if record["op"] == "start":
            self.mlflow_run_id = open_run(self._client, self.tracking_uri, record)
            self._client.set_tag(self.mlflow_run_id, "system_metrics.gpu", nvml_status())
            if self.system_metrics and self._monitor is None:
                self._monitor = start_system_metrics(
                    self.mlflow_run_id, self.tracking_uri, self.system_metrics_interval_s
                )
            return
        deliver(self._client, self.mlflow_run_id, record, artifact=record.get("stash"))

    def _go_offline(self, err: BaseException) -> None:
        self._offline_since = time.monotonic()
        self._stash_pending_artifacts()
        if not self._warned_unavailable:
            self._warned_unavailable = True
            reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            warnings.warn(
                f"MLflow at {self.tracking_uri} is unreachable ({reason}); training goes on and every record "
                f"is kept in {self.buffer_dir}; load them later with: lambda-repro mlflow-replay {self.buffer_dir}",
                TrackingUnavailableWarning,
                stacklevel=5,
            )

    def _stash_pending_artifacts(self) -> None:
        # Copy now: the file may change or vanish before MLflow is back.
        for record in self._pending:
            if record["op"] == "artifact" and record.get("stash") is None:
                try:
                    record["stash"] = str(self.buffer.stash_artifact(record["seq"], record["path"]))
                except OSError as err:
                    record["stash"] = record["path"]  # do not retry the copy; the original is still named
                    warnings.warn(
                        f"could not copy artifact {record['path']} into {self.buffer_dir} ({err}); "
                        "a replay will read the original file",
                        TrackingUnavailableWarning,
                        stacklevel=5,
                    )

    def _lower_http_timeouts(self) -> None:
        self._saved_env = lower_http_timeouts(self.tracking_uri, self.http_timeout_s)

    def _restore_http_timeouts(self) -> None:
        restore_http_timeouts(self._saved_env)
        self._saved_env = []
