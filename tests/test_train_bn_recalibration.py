"""train.bn_recalibration_images: BN statistics recomputed after the last epoch, before the final validation.

Tiny training (lambda_resnet26 at 32 px, 8 images, 2 epochs), in-process: tens of seconds, slow.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lambda_repro.data import build_dataset, eval_transform, load_manifest
from lambda_repro.evaluation import evaluate
from lambda_repro.evaluation.recalibration import recalibrate_batchnorm
from lambda_repro.models import create_model, read_checkpoint
from lambda_repro.training import train
from lambda_repro.training.device_options import resolve_channels_last
from tests.test_train_resume import SINGLE, manifest, tiny_config  # noqa: F401 (manifest: a fixture)

CPU = torch.device("cpu")


def trained_model(checkpoint: dict, classes: int) -> torch.nn.Module:
    model = create_model("lambda_resnet26", num_classes=classes)
    model.load_state_dict(checkpoint["state_dict"])
    return model


@pytest.mark.slow
def test_recalibration_sets_the_statistics_a_hand_recalibration_gives_and_leaves_weights_alone(manifest, tmp_path):  # noqa: F811
    off = tiny_config(manifest, tmp_path / "off")
    on = dataclasses.replace(tiny_config(manifest, tmp_path / "on"), bn_recalibration_images=6)
    assert train(off, SINGLE).status == train(on, SINGLE).status == "finished"
    plain, recalibrated = read_checkpoint(off.checkpoint), read_checkpoint(on.checkpoint)
    classes = load_manifest(manifest)["classes"]

    # By hand: the weights the run ended with, recalibrated the documented way.
    by_hand = trained_model(plain, len(classes))
    if resolve_channels_last(on.channels_last, CPU):  # in the layout the run trained and recalibrated in
        by_hand.to(memory_format=torch.channels_last)
    images = build_dataset(load_manifest(manifest), "train", eval_transform(32))
    assert recalibrate_batchnorm(by_hand, images, images=6, batch_size=on.eval_batch_size, device=CPU, seed=0) == 6
    expected = by_hand.state_dict()
    buffers = {name for name, _ in by_hand.named_buffers()}
    for key, tensor in recalibrated["state_dict"].items():
        assert torch.equal(tensor, expected[key]), key  # weights as trained, buffers as recalibrated by hand
        if key not in buffers:
            assert torch.equal(tensor, plain["state_dict"][key]), key
    changed = [k for k in buffers if k.endswith("running_var") and not torch.equal(plain["state_dict"][k], expected[k])]
    assert changed  # the off run kept the training's statistics

    # The final validation scored the recalibrated model; its loss is finite.
    val = build_dataset(load_manifest(manifest), "val", eval_transform(32))
    scores = evaluate(trained_model(recalibrated, len(classes)), val, batch_size=8, device=CPU, progress=False)
    assert math.isfinite(scores["loss"])
    assert recalibrated["history"][-1]["val_top1"] == scores["top1"]

    def untimed(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in ("img_per_s", "epoch_s")}

    assert untimed(recalibrated["history"][0]) == untimed(plain["history"][0])  # epoch 1 untouched
