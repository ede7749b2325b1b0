"""End to end: `dvc repro` of prepare -> train -> evaluate at a tiny size, in a copy of the project.

The copy is a fresh git repository holding the tracked files, with params.yaml shrunk to
a few images and one epoch of lambda_resnet26 at 32 pixels, so DDP (2 processes, gloo),
DVC, MLflow and the metrics files all run for real in about two minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lambda_repro.metrics_files import read_metrics

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The pipeline's stage commands call `python`; make it this interpreter's environment.
ENV_BIN = str(Path(sys.executable).parent)


def tiny_params(params: dict) -> dict:
    params["model"]["name"] = "lambda_resnet26"
    params["data"]["synthetic"].update(classes=2, train_per_class=8, val_per_class=4, min_size=32, max_size=40)
    params["train"].update(epochs=1, image_size=32, global_batch=4, workers=0)
    params["evaluate"].update(image_size=32, batch_size=8)
    params["tracking"]["system_metrics_interval_s"] = 1
    return params


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        source = PROJECT_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    params = tiny_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stale in ("dvc.lock", "metrics"):  # a clone starts with no results of its own
        path = repo / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{ENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@lambda-repro.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@lambda-repro.invalid",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny pipeline"], repo, env)
    run([f"{ENV_BIN}/dvc", "repro", "evaluate"], repo, env)
    return repo, env


@pytest.mark.slow
def test_repro_writes_consistent_metrics(project):
    repo, _ = project
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {"prepare", "train", "evaluate"} <= set(lock["stages"])
    train = read_metrics(repo / "metrics/train.json")  # the numbers, with train_info.json's context
    evaluation = read_metrics(repo / "metrics/eval.json")
    history = (repo / "metrics/train_history.csv").read_text().splitlines()
    assert (train["epochs"], train["world_size"], train["global_batch"]) == (1, 2, 4)
    assert len(history) == 2  # header + one epoch
    assert (evaluation["images"], evaluation["resolution"], evaluation["resize"]) == (8, 32, 37)
    assert evaluation["epochs_trained"] == 1
    # The same checkpoint and preprocessing score the same in training's last validation and here.
    assert evaluation["top1"] == pytest.approx(train["top1"])


@pytest.mark.slow
def test_mlflow_run_holds_params_metrics_system_metrics_and_commit(project):
    repo, env = project
    from mlflow import MlflowClient

    pointer = json.loads((repo / "metrics/mlflow_run.json").read_text())
    assert pointer["tracking_uri"] == "sqlite:///mlflow.db"
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lambda-repro")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [pointer["run_id"]]  # one run for the pipeline
    run_ = runs[0]
    assert run_.data.params["train.epochs"] == "1" and run_.data.params["model.name"] == "lambda_resnet26"
    # Metrics are the learning curves (and system metrics); single values are params.
    curves = {"train_loss", "train_top1", "lr", "img_per_s", "val_top1", "val_top5", "epoch_s"}
    assert {k for k in run_.data.metrics if not k.startswith("system/")} == curves
    assert float(run_.data.params["eval.top1"]) == pytest.approx(read_metrics(repo / "metrics/eval.json")["top1"])
    assert any(key.startswith("system/cpu_utilization") for key in run_.data.metrics)
    commit = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    assert run_.data.tags["mlflow.source.git.commit"] == commit
    logged = [a.path for a in client.list_artifacts(run_.info.run_id, "checkpoints")]
    assert logged == ["checkpoints/last.pt"]


@pytest.mark.slow
def test_second_repro_is_a_no_op_and_a_training_param_dirties_only_train(project):
    repo, env = project
    checkpoint = repo / "checkpoints/last.pt"
    before = checkpoint.stat().st_mtime_ns
    again = run([f"{ENV_BIN}/dvc", "repro", "evaluate"], repo, env)
    assert "Running stage" not in again.stdout
    assert checkpoint.stat().st_mtime_ns == before
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["base_lr"] *= 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run([f"{ENV_BIN}/dvc", "status", "--json", "--with-deps", "evaluate"], repo, env).stdout)
    assert set(status) == {"train"}  # evaluate follows once train's checkpoint changes; prepare is untouched


@pytest.mark.slow
def test_a_profile_param_does_not_rerun_training(project):
    repo, env = project
    params = tiny_params(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    params["profile"]["repeats"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run([f"{ENV_BIN}/dvc", "status", "--json", "--with-deps", "evaluate"], repo, env).stdout)
    assert status == {}  # prepare, train and evaluate stay up to date
