"""Loading any checkpoint for evaluation: ours (with class names) or the published layout (``module.`` keys)."""

from __future__ import annotations

import pytest
import torch

from lambda_repro.evaluation import model_for_checkpoint
from lambda_repro.models import CheckpointError, create_model, save_checkpoint

CLASSES = ["n00000000", "n00000001", "n00000002"]


@pytest.fixture(scope="module")
def weights() -> dict:
    torch.manual_seed(0)
    return create_model("lambda_resnet26", num_classes=3).state_dict()


def test_published_layout_loads_with_module_prefixes_stripped(weights, tmp_path):
    path = tmp_path / "published.pth.tar"
    save_checkpoint({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 130}, path)
    model, checkpoint = model_for_checkpoint(path, "lambda_resnet26", CLASSES)
    assert checkpoint["epoch"] == 130
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_class_count_and_names_must_match_the_dataset(weights, tmp_path):
    bare = tmp_path / "bare.pt"
    save_checkpoint(dict(weights), bare)
    with pytest.raises(CheckpointError, match="3 outputs but the dataset has 2 classes"):
        model_for_checkpoint(bare, "lambda_resnet26", CLASSES[:2])
    ours = tmp_path / "ours.pt"
    save_checkpoint({"state_dict": dict(weights), "classes": ["a", "b", "c"]}, ours)
    with pytest.raises(CheckpointError, match="differ from the dataset"):
        model_for_checkpoint(ours, "lambda_resnet26", CLASSES)


def test_wrong_architecture_names_the_mismatched_keys(weights, tmp_path):
    path = tmp_path / "ours.pt"
    save_checkpoint({"state_dict": dict(weights)}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        model_for_checkpoint(path, "lambda_resnet50", CLASSES)
