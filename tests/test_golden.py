"""The model and its layers reproduce the published code's float64 outputs (golden fixtures)."""

from __future__ import annotations

import pytest
import torch
from conftest import calibrated_outputs, relative_error
from fill import fill_state_dict

from lambda_repro.models import LambdaLayer, create_model

TOLERANCE = 1e-9


@pytest.mark.parametrize("index", range(5))
def test_lambda_layer_matches_golden(layer_golden, index):
    config, arrays = layer_golden
    case = config["configs"][index]
    layer = LambdaLayer(case["d"], stride=case["stride"])
    assert {k: list(v.shape) for k, v in layer.state_dict().items()} == case["state_dict"]
    fill_state_dict(layer, config["seed"] + index)
    layer.double()
    train_out, eval_out = calibrated_outputs(layer, torch.from_numpy(arrays[f"c{index}_input"]))
    assert list(train_out.shape) == case["output_shape"]
    assert relative_error(train_out, arrays[f"c{index}_train_output"]) < TOLERANCE
    assert relative_error(eval_out, arrays[f"c{index}_eval_output"]) < TOLERANCE


def test_lambda_resnet50_matches_golden(model_golden):
    model = create_model("lambda_resnet50")
    fill_state_dict(model, int(model_golden["seed"]))
    model.double()
    train_logits, eval_logits = calibrated_outputs(model, torch.from_numpy(model_golden["input"]))
    assert relative_error(train_logits, model_golden["train_logits"]) < TOLERANCE
    assert relative_error(eval_logits, model_golden["eval_logits"]) < TOLERANCE


def test_wrong_weights_are_detected(layer_golden):
    """The comparison can fail: another seed's weights give a different function."""
    config, arrays = layer_golden
    layer = LambdaLayer(config["configs"][0]["d"])
    fill_state_dict(layer, config["seed"] + 1)
    layer.double()
    train_out, _ = calibrated_outputs(layer, torch.from_numpy(arrays["c0_input"]))
    assert relative_error(train_out, arrays["c0_train_output"]) > 1e-3
