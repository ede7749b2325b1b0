"""model_from_checkpoint builds the recorded arch and classes; load_checkpoint says what a class mismatch needs."""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import (
    CheckpointError,
    create_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def ten_class_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("lambda_resnet26", num_classes=10)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    classes = [f"n{i:08d}" for i in range(10)]
    save_checkpoint({"state_dict": model.state_dict(), "arch": "lambda_resnet26", "classes": classes}, path)
    return path, model, classes


def test_builds_recorded_arch_and_classes(ten_class_checkpoint):
    path, source, classes = ten_class_checkpoint
    model, checkpoint = model_from_checkpoint(path)
    assert model.fc.out_features == 10
    assert checkpoint["arch"] == "lambda_resnet26" and checkpoint["classes"] == classes
    assert not model.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # train mode: a random network's eval-mode activations overflow to nan
        assert torch.equal(model.train()(x), source.train()(x))


def test_published_layout_without_classes_and_bare_state_dict(tmp_path, ten_class_checkpoint):
    _, source, _ = ten_class_checkpoint
    published = tmp_path / "lambda_resnet26.pth.tar"
    torch.save({"arch": "lambda_resnet26", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               published)  # fmt: skip
    model, checkpoint = model_from_checkpoint(published)
    assert model.fc.out_features == 10 and "classes" not in checkpoint

    bare = tmp_path / "bare.pt"
    torch.save(source.state_dict(), bare)
    with pytest.raises(CheckpointError, match="records no architecture"):
        model_from_checkpoint(bare)
    model, _ = model_from_checkpoint(bare, arch="lambda_resnet26")
    assert torch.equal(model.fc.weight, source.fc.weight)
    with pytest.raises(CheckpointError, match="not a registered model"):
        model_from_checkpoint(bare, arch="lambda_resnet9000")
    with pytest.raises(CheckpointError, match="missing keys"):  # the wrong arch
        model_from_checkpoint(bare, arch="resnet50")


def test_class_mismatch_names_num_classes_and_the_arch(ten_class_checkpoint):
    path, _, _ = ten_class_checkpoint
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("lambda_resnet26"), path)
    message = str(info.value)
    assert "fc.weight: checkpoint (10, 2048) vs model (1000, 2048)" in message
    assert "num_classes=10" in message and "model_from_checkpoint" in message
    assert "made for lambda_resnet26" in message


def test_class_names_must_match_the_classifier(tmp_path, ten_class_checkpoint):
    _, source, _ = ten_class_checkpoint
    path = tmp_path / "odd.pt"
    save_checkpoint({"state_dict": source.state_dict(), "arch": "lambda_resnet26", "classes": ["a", "b"]}, path)
    with pytest.raises(CheckpointError, match="2 class names but its classifier has 10 outputs"):
        model_from_checkpoint(path)
