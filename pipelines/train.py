"""DVC stage `train`: launch the distributed training workers with torchrun and wait for them.

Reads the `seed`, `model`, `train`, `distributed` and `tracking` sections of params.yaml
(and `data.manifest`); writes `train.json`, `train_history.csv` and `mlflow_run.json` into
`--metrics-dir`. Every node of a multi-node job runs this same command; each node's
rank and the rendezvous address come from params, or from the environment where a
scheduler sets them (`NODE_RANK` or SLURM's `SLURM_NODEID`; `MASTER_ADDR`, `MASTER_PORT`).

Exit codes: 0 trained; 75 stopped by SIGTERM / SIGINT with a checkpoint saved (run again to
resume); 1 bad params, a NaN / inf loss, or a crash torchrun could not recover from.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.data import load_manifest
from lambda_repro.evaluation import model_for_checkpoint
from lambda_repro.models import CheckpointError, read_checkpoint
from lambda_repro.tracking.git_info import git_tags
from lambda_repro.tracking.model_logging import log_pytorch_model
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, log_to_run, read_run_pointer
from lambda_repro.tracking.run_naming import run_name, run_tags
from lambda_repro.training import TrainConfig, torchrun_command
from lambda_repro.training.launch import device_count_problem
from lambda_repro.training.outcome import EXIT_CODES, FAILED, FINISHED, OUTCOME_ENV, PREEMPTED
from lambda_repro.training.recipe import model_options
from lambda_repro.training.supervise import last_exception_line, supervise
from pipelines._stage import ParamError, fail, stage


def tracking_settings(params: dict) -> dict:
    """The MLflow run the workers open (rank 0): named after what runs, tagged with the commit and DVC experiment."""
    tracking = params["tracking"]
    manifest = load_manifest(params["data"]["manifest"])
    recipe = {
        "model": params["model"]["name"],
        "dataset": manifest.get("name") or manifest["kind"],
        "epochs": params["train"]["epochs"],
        "seed": params["seed"],
    }
    # `dvc exp run` names the experiment in the environment of its stages.
    experiment = os.environ.get("DVC_EXP_NAME")
    return {
        "uri": tracking["uri"],
        "experiment": tracking["experiment"],
        "system_metrics": tracking["system_metrics"],
        "system_metrics_interval_s": tracking["system_metrics_interval_s"],
        "run_name": run_name(**recipe, experiment=experiment),
        "tags": {
            **git_tags(),
            **run_tags(**recipe, experiment=experiment, baseline_rev=os.environ.get("DVC_EXP_BASELINE_REV")),
            "pipeline.stage": "train",
        },
    }


def log_results(config: TrainConfig, params: dict) -> None:
    """Into the run: the metrics files, and the trained model as an MLflow model (never fatal)."""
    metrics_dir = Path(config.metrics_dir)
    ref = read_run_pointer(metrics_dir / RUN_POINTER_NAME)
    if ref is None:
        return
    files = [metrics_dir / name for name in ("train.json", "train_info.json", "train_history.csv")]
    problem = log_to_run(ref, artifacts=[(p, "metrics") for p in files], buffer_dir=metrics_dir / "mlflow_buffer")
    if problem:
        print(f"train: MLflow: {problem}")
        return
    try:
        classes = load_manifest(config.manifest)["classes"]
        model, _ = model_for_checkpoint(config.checkpoint, config.model, classes, **model_options(params["model"]))
        uri = log_pytorch_model(ref, model, config.image_size)
    except Exception as err:  # the store is optional: the checkpoint is the result
        print(f"train: MLflow: logging the model failed: {type(err).__name__}: {err}")
        return
    print(f"train: model logged to MLflow as {uri}")


def node_settings(distributed: dict) -> dict:
    """Node rank and rendezvous address: params, overridden by a scheduler's environment."""
    node_rank = os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", distributed["node_rank"]))
    return {
        "nproc_per_node": distributed["nproc_per_node"],
        "nnodes": distributed["nnodes"],
        "node_rank": int(node_rank),
        "master_addr": os.environ.get("MASTER_ADDR", distributed["master_addr"]),
        "master_port": int(os.environ.get("MASTER_PORT", distributed["master_port"])),
        "max_restarts": distributed["max_restarts"],
    }


WORKER_LOG = Path("logs") / "train_workers.log"  # torchrun's and the workers' stderr (tracebacks); a dvc.yaml output


def run_torchrun(config: TrainConfig, node: dict) -> tuple[int, dict | None]:
    """Run torchrun tied to this process (lambda_repro.training.supervise); returns its exit code and the outcome.

    A checkpoint that cannot be resumed is refused before torchrun starts. Every failure
    comes back as an outcome whose message is one line naming the cause and the log file.
    """
    checkpoint = Path(config.checkpoint)
    if checkpoint.exists():
        try:
            read_checkpoint(checkpoint)
        except CheckpointError as err:
            return 1, {"status": FAILED, "message": f"cannot resume from train.checkpoint: {err}"}
    with tempfile.TemporaryDirectory(prefix="lambda-repro-train-") as tmp:
        config_path, outcome_path = Path(tmp) / "config.json", Path(tmp) / "outcome.json"
        config_path.write_text(config.to_json(), encoding="utf-8")
        command = torchrun_command(config_path, **node)
        env = {**os.environ, OUTCOME_ENV: str(outcome_path)}
        # CPU threads per worker: the node's cores shared out (torchrun would set 1 only when nproc > 1).
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // node["nproc_per_node"])))
        # One log per node: the nodes of a multi-node job may share the project's directory.
        log = WORKER_LOG if node["node_rank"] == 0 else WORKER_LOG.with_suffix(f".node{node['node_rank']}.log")
        run = supervise(command, env, outcome_path, log)
    outcome = run.outcome
    if outcome is not None and outcome.get("permanent"):
        message = f"{outcome['message']}; not retried (a restart would fail the same way); tracebacks in {log}"
        return run.returncode, {**outcome, "message": message}
    if outcome is None and run.stop_signal:
        message = f"stopped by {run.stop_signal} before training began: nothing to save; run again to start"
        return run.returncode, {"status": PREEMPTED, "message": message}
    if outcome is None and run.returncode != 0:
        attempts = len(run.failed_workers)
        failed = f" after {attempts} worker failure(s), the last {run.failed_workers[-1]}" if attempts else ""
        cause = last_exception_line(log)
        message = f"torchrun exited with code {run.returncode}{failed}{f': {cause}' if cause else ''}"
        return run.returncode, {"status": FAILED, "message": f"{message}; tracebacks in {log}"}
    return run.returncode, outcome


def run(params: dict, args) -> int:
    node = node_settings(params["distributed"])
    if node["node_rank"] >= node["nnodes"]:
        raise ParamError(
            f"distributed.node_rank: must be < distributed.nnodes ({node['nnodes']}), got {node['node_rank']}"
        )
    problem = device_count_problem(node["nproc_per_node"])
    if problem:
        raise ParamError(problem)
    config = TrainConfig.from_params(
        params,
        world_size=node["nproc_per_node"] * node["nnodes"],
        metrics_dir=args.metrics_dir,
        tracking=tracking_settings(params) if Path(params["data"]["manifest"]).is_file() else None,
    )
    if not Path(config.manifest).is_file():
        raise ParamError(f"data.manifest: file not found: {config.manifest} (run the prepare stage first)")

    print(
        f"train: {config.model}, {config.epochs} epochs at {config.image_size}px, global batch {config.global_batch} "
        f"over {config.world_size} processes ({node['nnodes']} node(s)), {config.optimizer} lr {config.peak_lr:g}"
    )
    returncode, result = run_torchrun(config, node)
    # The workers' own report first: torchrun exits non-zero when it was itself sent SIGTERM.
    if result is not None and result["status"] != FINISHED:
        return fail("train", result["message"], EXIT_CODES[result["status"]])
    if returncode != 0:
        return fail("train", f"torchrun exited with code {returncode} (see the worker errors above)", returncode)
    if result is None:
        return fail("train", "the workers exited without reporting an outcome")
    print(f"train: {result['message']}")
    if node["node_rank"] == 0 and config.tracking:
        log_results(config, params)
    return 0


main = stage("train", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
