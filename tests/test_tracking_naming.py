"""MLflow made for training runs: run names and tags that say what ran, a training experiment, a servable model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from lambda_repro.tracking import RunTracker
from lambda_repro.tracking.delivery import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from lambda_repro.tracking.model_logging import input_example, log_pytorch_model
from lambda_repro.tracking.pipeline_run import RunRef
from lambda_repro.tracking.run_naming import DVC_BASELINE_TAG, DVC_EXPERIMENT_TAG, run_name, run_tags


def test_run_name_says_model_data_epochs_seed_and_the_dvc_experiment():
    assert run_name("lambda_resnet50", "synthetic", 8, 0) == "lambda_resnet50 synthetic 8ep seed0"
    assert run_name("resnet50", "fashion_mnist", 3, 2, experiment="sworn-yaks") == (
        "sworn-yaks: resnet50 fashion_mnist 3ep seed2"
    )


def test_run_tags_name_the_recipe_and_the_dvc_experiment_only_when_there_is_one():
    tags = run_tags("resnet50", "synthetic", 8, 1, experiment="sworn-yaks", baseline_rev="abc123")
    assert tags == {
        "model": "resnet50",
        "dataset": "synthetic",
        "epochs": "8",
        "seed": "1",
        DVC_EXPERIMENT_TAG: "sworn-yaks",
        DVC_BASELINE_TAG: "abc123",
    }
    assert DVC_EXPERIMENT_TAG not in run_tags("resnet50", "synthetic", 8, 1)


def _tracked_run(tmp_path, **kwargs) -> tuple[str, str]:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    tracker = RunTracker(uri, "naming-test", buffer_dir=tmp_path / "buffer", system_metrics=False, **kwargs)
    run_id = tracker.start()
    tracker.end()
    return uri, run_id


def test_the_experiment_is_a_model_training_one_and_the_run_keeps_its_name_and_tags(tmp_path):
    tags = run_tags("resnet50", "synthetic", 2, 0, experiment="sworn-yaks")
    uri, run_id = _tracked_run(tmp_path, run_name="sworn-yaks: resnet50 synthetic 2ep seed0", tags=tags)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("naming-test")
    # MLflow 3's UI opens a "custom_model_development" experiment on its run list, not a GenAI overview.
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    run = client.get_run(run_id)
    assert run.info.run_name == "sworn-yaks: resnet50 synthetic 2ep seed0"
    assert run.data.tags[DVC_EXPERIMENT_TAG] == "sworn-yaks" and run.data.tags["seed"] == "0"


def test_an_experiment_made_before_gets_the_kind_tag(tmp_path):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(uri)
    client.create_experiment("naming-test", artifact_location=(tmp_path / "artifacts").as_uri())
    _tracked_run(tmp_path)
    assert client.get_experiment_by_name("naming-test").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


@pytest.mark.slow
def test_the_logged_model_has_a_signature_and_loads_back_with_mlflow_pytorch(tmp_path):
    import mlflow.pytorch
    from mlflow.models import get_model_info

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    uri, run_id = _tracked_run(tmp_path)
    model_uri = log_pytorch_model(RunRef(uri, "naming-test", run_id), model, image_size=16)
    assert model_uri == f"runs:/{run_id}/model"
    mlflow.set_tracking_uri(uri)
    info = get_model_info(model_uri)
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 3, 16, 16)
    loaded = mlflow.pytorch.load_model(model_uri)
    example = torch.from_numpy(input_example(16))
    with torch.no_grad():
        assert torch.equal(loaded(example), model(example))
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert np.asarray(input_example(16)).dtype == np.float32
