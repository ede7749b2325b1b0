"""One training process, as torchrun starts it: ``python -m lambda_repro.training.worker --config config.json``.

Joins the process group, opens the MLflow run on rank 0 (resuming the checkpoint's run),
trains, and reports the outcome to the launcher (see :mod:`lambda_repro.training.outcome`).
A crash exits non-zero so that torchrun restarts the group, which resumes from the last
checkpoint; an error that a restart cannot cure is reported as a permanent failure instead,
and the launcher ends the group (see :mod:`lambda_repro.training.supervise`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from lambda_repro.distributed import init_distributed, shutdown_distributed
from lambda_repro.process_setup import configure_process, process_tags
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, write_run_pointer
from lambda_repro.training import outcome
from lambda_repro.training.recipe import TrainConfig, source_digest
from lambda_repro.training.resume import recorded_run_id
from lambda_repro.training.supervise import tie_to_launcher
from lambda_repro.training.trainer import train

MLFLOW_STATUS = {outcome.FINISHED: "FINISHED", outcome.PREEMPTED: "KILLED", outcome.FAILED: "FAILED"}
# How long a worker with a permanent error waits for the launcher to end the group before exiting itself.
LAUNCHER_GRACE_S = 60


def open_tracker(config: TrainConfig):
    """Start (or resume) the MLflow run; returns ``(tracker, run_id)``."""
    from lambda_repro.tracking import RunTracker
    from lambda_repro.tracking.uri import resolve_tracking_uri

    tracking = config.tracking
    uri = resolve_tracking_uri(tracking["uri"])
    tracker = RunTracker(
        uri,
        tracking["experiment"],
        run_name=tracking.get("run_name"),
        tags=tracking.get("tags"),
        buffer_dir=tracking.get("buffer_dir", Path(config.metrics_dir) / "mlflow_buffer"),
        system_metrics=tracking.get("system_metrics", True),
        system_metrics_interval_s=tracking.get("system_metrics_interval_s", 10),
        run_id=recorded_run_id(config.checkpoint, config.fingerprint(), source_digest()),
    )
    run_id = tracker.start()
    if tracker.requested_run_id is None:
        tracker.log_params(config.params_to_log)
    write_run_pointer(Path(config.metrics_dir) / RUN_POINTER_NAME, uri, tracking["experiment"], run_id)
    return tracker, run_id


def one_line(err: BaseException) -> str:
    """The error's message on one line: a DataLoader worker's error carries the whole traceback, its cause last."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    return lines[-1].split(": ", 1)[-1] if "Traceback" in str(err) else " ".join(lines)


def report_permanent_failure(err: BaseException, rank: int) -> None:
    """Tell the launcher that this error would recur on every restart, then wait for it to end the group.

    The traceback goes to stderr, which the launcher keeps in its log file. Exiting at once
    would let torchrun restart the group before the launcher reads the outcome.
    """
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
    outcome.write_outcome(outcome.FAILED, f"{one_line(err)} (rank {rank}, {type(err).__name__})", permanent=True)
    if os.environ.get(outcome.OUTCOME_ENV):
        time.sleep(LAUNCHER_GRACE_S)


def main(argv: list[str] | None = None) -> int:
    tie_to_launcher()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a JSON file holding the TrainConfig")
    args = parser.parse_args(argv)
    config = TrainConfig.from_json(args.config.read_text(encoding="utf-8"))
    context = init_distributed(config.backend)
    process = configure_process(context.device)  # this process is ours: math mode and heap
    tracker, run_id = None, None
    try:
        if context.is_main and config.tracking:
            tracker, run_id = open_tracker(config)
            # Tags, not params: a resumed run may find another setting (a user's MALLOC_* variable).
            tracker.set_tags(process_tags(process))
        result = train(config, context, tracker, run_id)
    except BaseException as err:
        if tracker is not None:
            tracker.log_event("crash", f"{type(err).__name__}: {err}")
            tracker.end("FAILED")
        if outcome.is_permanent(err) and os.environ.get(outcome.OUTCOME_ENV):
            report_permanent_failure(err, context.rank)
        # A crash: torchrun restarts the group (up to distributed.max_restarts), which resumes.
        raise
    finally:
        shutdown_distributed(context)
    if tracker is not None:
        tracker.end(MLFLOW_STATUS[result.status])
    if context.is_local_main:
        outcome.write_outcome(result.status, result.message)
    if result.status == outcome.FAILED and context.is_main:
        print(f"error: {result.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
