"""End to end on real images: every stage (`dvc repro`) with the Fashion-MNIST preset at a tiny size.

Needs Debian's dataset-fashion-mnist (`.ci/run` installs it). A copy of the project runs
the preset (`preset:` in params.yaml) with 40 train / 20 val images per class, lambda_resnet26 for a
few epochs at 32 px and a minimal profile, then checks the values: top-1 well above chance
(10 classes: 10%), the dataset's name and kind in every metrics file, MLflow and the report.
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

from lambda_repro.data.fashion_mnist import DEBIAN_DIR
from lambda_repro.metrics_files import read_metrics

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENV_BIN = str(Path(sys.executable).parent)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(DEBIAN_DIR).is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)"
    ),
]


def tiny(params: dict) -> dict:
    params["model"]["name"] = "lambda_resnet26"
    params["data"]["fashion_mnist"].update(train_per_class=40, val_per_class=20)
    params["train"].update(epochs=4, global_batch=16)
    params["evaluate"].update(batch_size=50)
    params["tracking"]["system_metrics"] = False
    params["profile"].update(
        resolution=32, train_batch_sizes=[2], inference_batch_sizes=[2], warmup=0, repeats=1, min_repeats=1
    )
    params["profile"].update(latency_repeats=2, max_seconds=1)
    return params


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("fashion") / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["preset"] = "pipelines/presets/fashion_mnist.yaml"  # the documented one-line switch
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny(params), sort_keys=False))
    for stale in ("dvc.lock", "metrics"):
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
    run(["git", "commit", "-qm", "fashion-mnist pipeline"], repo, env)
    run([f"{ENV_BIN}/dvc", "repro"], repo, env)
    return repo


def test_every_stage_runs_on_fashion_mnist_and_learns(project):
    manifest = json.loads((project / "data/manifest.json").read_text())
    assert (manifest["kind"], manifest["name"]) == ("fashion_mnist", "Fashion-MNIST")
    assert [manifest["splits"][s]["images"] for s in ("train", "val")] == [400, 200]
    evaluation = read_metrics(project / "metrics/eval.json")
    assert (evaluation["dataset"], evaluation["dataset_name"], evaluation["classes"]) == (
        "fashion_mnist",
        "Fashion-MNIST",
        10,
    )
    assert (evaluation["images"], evaluation["resolution"], evaluation["resize"]) == (200, 32, 37)
    assert evaluation["top1"] > 30.0, evaluation  # chance is 10%; measured here: 52.5% (4 epochs, 400 images)
    assert "health" in evaluation and isinstance(evaluation["health"]["ok"], bool)
    assert set(evaluation["health"]["max_abs_activation"]) >= {"layer1.0", "layer4.1", "fc"}


def test_report_and_mlflow_name_the_dataset(project):
    from mlflow import MlflowClient

    report = (project / "reports/report.md").read_text()
    assert "evaluated on Fashion-MNIST (fashion_mnist), not ImageNet" in report
    assert "top-5 of 10 classes is not the 1000-class top-5" in report
    assert "Numerical health of the evaluation:" in report
    assert "ImageNet validation images" not in report.split("## ")[0]  # verdict boxes: no "ImageNet" data
    pointer = json.loads((project / "metrics/mlflow_run.json").read_text())
    run_ = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(pointer["run_id"])
    assert run_.data.tags["dataset.name"] == "Fashion-MNIST" and run_.data.tags["dataset.kind"] == "fashion_mnist"
    assert run_.data.tags["health.ok"] in ("True", "False")
    # The health check's values are params (single values, not charts above the learning curves).
    params = run_.data.params
    assert int(params["eval.health.nonfinite_logits"]) >= 0 and float(params["eval.health.max_abs_activation.fc"]) > 0
    assert not [k for k in run_.data.metrics if k.startswith("eval")]
