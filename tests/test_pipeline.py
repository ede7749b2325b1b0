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
    assert evaluation["top1"] == pytest.approx(train["final_val_top1"])


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
    assert run_.info.run_name == "lambda_resnet26 synthetic 1ep seed0"
    assert (run_.data.tags["model"], run_.data.tags["dataset"], run_.data.tags["seed"]) == (
        "lambda_resnet26",
        "synthetic",
        "0",
    )
    assert run_.data.tags["process.heap"] == "kept"  # the training worker kept its heap (process_setup)
    assert run_.data.params["eval.lambda_formulations_measured"] == "False"  # auto: the rule's picks, recorded
    assert set(run_.data.params["eval.lambda_formulations"].replace(",", "=").split("=")[1::2]) <= {"dense", "spectral"}
    metrics_files = {a.path for a in client.list_artifacts(run_.info.run_id, "metrics")}
    assert {
        f"metrics/{n}" for n in ("train.json", "train_info.json", "train_history.csv", "eval.json")
    } <= metrics_files
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{run_.info.run_id}/model")
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)  # the two classes of the tiny dataset


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


def md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_an_experiment_compares_against_the_committed_baseline_and_both_checkpoints_stay(project):
    """Last in this file: it commits the baseline and runs an experiment in the shared project."""
    repo, env = project
    dvc = f"{ENV_BIN}/dvc"
    params = tiny_params(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([dvc, "repro", "evaluate"], repo, env)  # the params of the first run: nothing reruns
    run(["git", "add", "-A"], repo, env)  # dvc.lock and the small metrics files; the checkpoint is in DVC's cache
    run(["git", "commit", "-qm", "baseline"], repo, env)
    baseline_rev = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    checkpoint = repo / "checkpoints/last.pt"
    baseline_weights = md5(checkpoint)

    run([dvc, "exp", "run", "-S", "train.base_lr=0.4", "evaluate"], repo, env)
    experiment = run([dvc, "exp", "ls", "--name-only"], repo, env).stdout.split()[-1]
    experiment_weights = md5(checkpoint)
    assert experiment_weights != baseline_weights

    # --all: a one-epoch toy run may score the same top-1 with either lr, and an unchanged metric is left out.
    diff = json.loads(run([dvc, "metrics", "diff", "--all", "--json"], repo, env).stdout)
    top1 = diff["metrics/eval.json"]["top1"]
    assert isinstance(top1["old"], float) and isinstance(top1["new"], float)  # the committed baseline's number
    params_diff = json.loads(run([dvc, "params", "diff", "--json"], repo, env).stdout)
    changed = params_diff["params.yaml"]["train.base_lr"]
    assert (changed["old"], changed["new"]) == (0.2, 0.4)

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("lambda-repro").experiment_id], order_by=["start_time DESC"]
    )
    newest = runs[0]
    assert newest.info.run_name == f"{experiment}: lambda_resnet26 synthetic 1ep seed0"
    assert newest.data.tags["dvc.exp_name"] == experiment and newest.data.tags["dvc.baseline_rev"] == baseline_rev

    # Back to the baseline: its weights come from DVC's cache; the experiment's come back with exp apply.
    run(["git", "checkout", "--", "."], repo, env)
    run([dvc, "checkout", "--force"], repo, env)
    assert md5(checkpoint) == baseline_weights
    run([dvc, "exp", "apply", experiment], repo, env)
    assert md5(checkpoint) == experiment_weights
