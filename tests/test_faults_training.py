"""Faults in distributed training, end to end through the train stage's entry point (torchrun, 2 CPU processes).

A tiny recipe (lambda_resnet26 at 32 px, 2 classes x 16 images, global batch 4 over 2
processes: 8 steps per epoch, 2 epochs) is trained once without faults; every faulty run
must end with the same weights and metrics, or stop the way the suite promises:

* a worker SIGKILLed mid-epoch 2 -> torchrun restarts the group, training resumes from the
  last checkpoint, the result equals the uninterrupted run;
* SIGTERM to the stage (a scheduler's preemption) -> checkpoint saved, exit code 75, the
  rerun resumes to the same result;
* a NaN loss -> exit 1 with the step named, the last good checkpoint kept, the event in MLflow.

Faults are injected through the documented test hooks (lambda_repro/training/faults.py)
or real signals. Each torchrun launch costs tens of seconds on a loaded 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from mlflow import MlflowClient

from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec
from lambda_repro.metrics_files import read_metrics
from lambda_repro.models import read_checkpoint

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_STAGE = PROJECT_ROOT / "pipelines" / "train.py"
STEPS_PER_EPOCH = 8
EXIT_PREEMPTED = 75  # pipelines/train.py: "stopped by SIGTERM / SIGINT with a checkpoint saved"
# Wall-clock figures differ between runs; everything else must not.
TIMING_KEYS = {"img_per_s", "train_img_s", "epoch_s", "wall_s"}  # history rows, train.json
STAGE_TIMEOUT_S = 300  # one healthy run takes 20-80 s here, depending on the load


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The dataset and an initialised MLflow database, shared by every run of the module."""
    root = tmp_path_factory.mktemp("faults_training")
    spec = SyntheticSpec(classes=2, train_per_class=16, val_per_class=2, min_size=32, max_size=40)
    prepare_synthetic(str(root / "prepared"), str(root / "manifest.json"), spec, seed=0)
    MlflowClient(f"sqlite:///{root / 'template.db'}").search_experiments()
    return root


def make_run_dir(workspace: Path, name: str) -> Path:
    """A working directory for one training run: its params.yaml, checkpoints/, metrics/ and MLflow store."""
    run_dir = workspace / name
    run_dir.mkdir()
    shutil.copy(workspace / "template.db", run_dir / "mlflow.db")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["model"]["name"] = "lambda_resnet26"
    params["data"]["manifest"] = str(workspace / "manifest.json")
    params["train"].update(epochs=2, image_size=32, global_batch=4, workers=0, checkpoint="checkpoints/last.pt")
    params["distributed"].update(nproc_per_node=2, nnodes=1, max_restarts=2)
    params["tracking"].update(uri=f"sqlite:///{run_dir / 'mlflow.db'}", experiment="faults", system_metrics=False)
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params))
    return run_dir


def stage_env(**faults: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_REPRO_FAULT_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update({f"LAMBDA_REPRO_FAULT_{name.upper()}": str(value) for name, value in faults.items()})
    return env


def start_stage(run_dir: Path, **faults: int) -> subprocess.Popen:
    # Output to files, not pipes: nobody reads a pipe while the test waits, and a full one would block the stage.
    attempt = len(list(run_dir.glob("stage-*.out")))
    with open(run_dir / f"stage-{attempt}.out", "w") as out, open(run_dir / f"stage-{attempt}.err", "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(TRAIN_STAGE), "--params", "params.yaml"],
            cwd=run_dir,
            env=stage_env(**faults),
            stdout=out,
            stderr=err,
        )
    process.logs = (Path(out.name), Path(err.name))
    return process


def kill_tree(process: subprocess.Popen) -> None:
    """The stage starts torchrun in a session of its own: end the stage's whole process tree, by pid."""
    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in reversed(tree):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def finish_stage(process: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        process.wait()
        stdout, stderr = (path.read_text() for path in process.logs)
        pytest.fail(f"the train stage did not end within {timeout:.0f} s (killed)\n{stdout[-3000:]}\n{stderr[-6000:]}")
    stdout, stderr = (path.read_text() for path in process.logs)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_stage(run_dir: Path, timeout: float = STAGE_TIMEOUT_S, **faults: int) -> subprocess.CompletedProcess:
    return finish_stage(start_stage(run_dir, **faults), timeout)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"


def final_state(run_dir: Path) -> tuple[dict, dict, list[dict]]:
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    summary = read_metrics(run_dir / "metrics" / "train.json")  # with train_info.json
    history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in checkpoint["history"]]
    return checkpoint, {k: v for k, v in summary.items() if k not in TIMING_KEYS}, history


def assert_same_training(run_dir: Path, reference_dir: Path) -> None:
    checkpoint, summary, history = final_state(run_dir)
    ref_checkpoint, ref_summary, ref_history = final_state(reference_dir)
    assert checkpoint["finished"] and checkpoint["epoch"] == 2
    # In a shared checkout someone may edit the code between two runs: then nothing is comparable.
    assert checkpoint["code_digest"] == ref_checkpoint["code_digest"], "the training code changed while the test ran"
    assert checkpoint["state_dict"].keys() == ref_checkpoint["state_dict"].keys()
    different = [k for k, t in ref_checkpoint["state_dict"].items() if not torch.equal(t, checkpoint["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"
    assert history == ref_history
    assert summary == ref_summary


def mlflow_run(run_dir: Path):
    pointer = json.loads((run_dir / "metrics" / "mlflow_run.json").read_text())
    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    return client, client.get_run(pointer["run_id"])


@pytest.fixture(scope="module")
def reference(workspace) -> Path:
    run_dir = make_run_dir(workspace, "uninterrupted")
    result = run_stage(run_dir)
    assert result.returncode == 0, explain(result)
    return run_dir


def test_uninterrupted_run_is_recorded(reference):
    checkpoint, summary, history = final_state(reference)
    assert checkpoint["finished"] and [row["epoch"] for row in history] == [1, 2]
    assert summary["epochs"] == 2 and summary["world_size"] == 2
    client, run = mlflow_run(reference)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]


def test_worker_sigkilled_mid_epoch_resumes_to_the_same_result(workspace, reference):
    run_dir = make_run_dir(workspace, "sigkill")
    kill_step = STEPS_PER_EPOCH + 3  # epoch 2, step 3: after the epoch-1 checkpoint
    result = run_stage(run_dir, kill_at_step=kill_step, rank=1)
    assert result.returncode == 0, explain(result)
    # torchrun saw the worker die and restarted the group (it logs the failure, then the restart).
    assert "SIGKILL" in result.stderr or "Signal 9" in result.stderr or "exitcode: -9" in result.stderr, explain(result)
    assert_same_training(run_dir, reference)
    client, run = mlflow_run(run_dir)
    assert run.info.status == "FINISHED"
    # One MLflow run across the restart (the checkpoint carries its id), each epoch once.
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]


def test_sigterm_saves_a_checkpoint_exits_75_and_the_rerun_resumes(workspace, reference):
    run_dir = make_run_dir(workspace, "sigterm")
    checkpoint_path = run_dir / "checkpoints" / "last.pt"
    stage = start_stage(run_dir)
    try:
        # Preempt as a scheduler does (SIGTERM to the stage) once epoch 1 is checkpointed.
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        while time.monotonic() < deadline and stage.poll() is None:
            if checkpoint_path.exists() and read_checkpoint(checkpoint_path)["epoch"] >= 1:
                break
            time.sleep(0.2)
        assert stage.poll() is None, "the run ended before it could be preempted"
        stage.send_signal(signal.SIGTERM)
        first = finish_stage(stage, timeout=STAGE_TIMEOUT_S)
    finally:
        kill_tree(stage)
    assert first.returncode == EXIT_PREEMPTED, explain(first)
    assert "stopped by SIGTERM" in first.stderr + first.stdout, explain(first)
    saved = read_checkpoint(checkpoint_path)
    assert saved["epoch"] == 1 and not saved["finished"]  # stopped inside epoch 2, at step saved["step_in_epoch"]
    client, run = mlflow_run(run_dir)
    assert run.info.status == "KILLED"
    assert "event.preempted" in run.data.tags

    second = run_stage(run_dir)
    assert second.returncode == 0, explain(second)
    assert "resuming from checkpoints/last.pt" in second.stdout, explain(second)
    assert "training code changed" not in second.stdout, "the code was edited between the two runs of the test"
    assert_same_training(run_dir, reference)
    client, resumed = mlflow_run(run_dir)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"


def test_nan_loss_stops_naming_the_step_keeps_the_checkpoint_and_tells_mlflow(workspace):
    run_dir = make_run_dir(workspace, "nan")
    nan_step = STEPS_PER_EPOCH + 2  # epoch 2, step 2
    result = run_stage(run_dir, nan_at_step=nan_step)
    assert result.returncode == 1, explain(result)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("train: error:")]
    assert len(error_lines) == 1, explain(result)
    assert f"global step {nan_step}" in error_lines[0] and "epoch 2, step 2" in error_lines[0]
    kept = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (kept["epoch"], kept["step_in_epoch"], kept["finished"]) == (1, 0, False)
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values() if t.is_floating_point())
    client, run = mlflow_run(run_dir)
    assert run.info.status == "FAILED"
    assert f"global step {nan_step}" in run.data.tags["event.non_finite_loss"]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "events")]
    assert any(path.startswith("events/non_finite_loss") for path in artifacts), artifacts
