"""Training in-process (a world of one): an interrupted run resumes bit for bit, a NaN stops it cleanly.

Tiny (lambda_resnet26 at 32 px, 8 images, 2 steps per epoch) but still tens of seconds each: slow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec
from lambda_repro.distributed import DistributedContext
from lambda_repro.models import read_checkpoint
from lambda_repro.training import TrainConfig, train
from lambda_repro.training.metrics_files import HISTORY_COLUMNS

SINGLE = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    spec = SyntheticSpec(classes=2, train_per_class=4, val_per_class=2, min_size=32, max_size=40)
    prepare_synthetic(str(root / "prepared"), str(root / "manifest.json"), spec, seed=0)
    return str(root / "manifest.json")


def tiny_config(manifest: str, out: Path) -> TrainConfig:
    # 8 images / batch 4 = 2 steps per epoch; 2 epochs = global steps 0..3.
    return TrainConfig(
        model="lambda_resnet26",
        manifest=manifest,
        epochs=2,
        image_size=32,
        global_batch=4,
        world_size=1,
        base_lr=0.1,
        eval_batch_size=8,
        checkpoint=str(out / "last.pt"),
        metrics_dir=str(out / "metrics"),
        progress=False,
    )


@pytest.mark.slow
def test_preempted_run_resumes_to_the_same_weights(manifest, tmp_path, monkeypatch):
    straight = train(tiny_config(manifest, tmp_path / "straight"), SINGLE)
    assert straight.status == "finished"

    config = tiny_config(manifest, tmp_path / "interrupted")
    monkeypatch.setenv("LAMBDA_REPRO_FAULT_TERM_AT_STEP", "3")  # epoch 2, step 1
    stopped = train(config, SINGLE)
    assert stopped.status == "preempted"
    assert "epoch 2, step 1" in stopped.message
    saved = read_checkpoint(config.checkpoint)
    assert (saved["epoch"], saved["step_in_epoch"], saved["finished"]) == (1, 1, False)

    resumed = train(config, SINGLE)  # starts at step 3: the injected SIGTERM does not fire again
    assert resumed.status == "finished"
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(config.checkpoint)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert [row["val_top1"] for row in a["history"]] == [row["val_top1"] for row in b["history"]]
    assert [row["train_loss"] for row in a["history"]] == pytest.approx([row["train_loss"] for row in b["history"]])
    header = (tmp_path / "interrupted" / "metrics" / "train_history.csv").read_text().splitlines()[0]
    assert header.split(",") == list(HISTORY_COLUMNS)


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(manifest, tmp_path, monkeypatch):
    config = tiny_config(manifest, tmp_path)
    monkeypatch.setenv("LAMBDA_REPRO_FAULT_NAN_AT_STEP", "3")
    result = train(config, SINGLE)
    assert result.status == "failed"
    assert "global step 3" in result.message and "epoch 2, step 1" in result.message
    kept = read_checkpoint(config.checkpoint)
    assert kept["epoch"] == 1 and kept["step_in_epoch"] == 0
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values() if t.is_floating_point())


@pytest.mark.slow
def test_a_changed_recipe_starts_over(manifest, tmp_path, monkeypatch):
    config = tiny_config(manifest, tmp_path)
    config.epochs = 1
    assert train(config, SINGLE).status == "finished"
    config.epochs = 2  # another cosine schedule: the finished 1-epoch checkpoint must not be continued
    log = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: log.append(" ".join(map(str, a))))
    assert train(config, SINGLE).status == "finished"
    assert any("another recipe" in line for line in log)
    assert read_checkpoint(config.checkpoint)["epoch"] == 2


@pytest.mark.slow
def test_adamw_is_a_params_switch_and_its_state_is_checkpointed(manifest, tmp_path):
    config = tiny_config(manifest, tmp_path)
    config.epochs, config.optimizer, config.base_lr = 1, "adamw", 0.01
    result = train(config, SINGLE)
    assert result.status == "finished" and result.summary["epochs"] == 1
    state = read_checkpoint(config.checkpoint)["optimizer"]
    assert state["param_groups"][0]["betas"] == (0.9, 0.999)  # momentum is AdamW's beta1
    assert all({"exp_avg", "exp_avg_sq"} <= set(s) for s in state["state"].values())
    sgd = dataclasses.replace(config, optimizer="sgd")
    assert sgd.fingerprint() != config.fingerprint()  # another optimizer is another recipe: no resume across
