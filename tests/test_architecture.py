"""State-dict layout, counts and the layer's API against the published architecture."""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import LambdaLayer, create_model, list_models
from lambda_repro.profiling import count_macs, count_params

LAMBDA_RESNETS = ["lambda_resnet26", "lambda_resnet38", "lambda_resnet50", "lambda_resnet101", "lambda_resnet152"]


def test_registry_lists_the_family():
    assert set(LAMBDA_RESNETS + ["resnet50"]) <= set(list_models())


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'lambda_resnet51'.*lambda_resnet50"):
        create_model("lambda_resnet51")


def test_lambda_resnet50_state_dict_is_the_published_one(architecture_facts):
    expected = [(k, shape, dtype) for k, shape, dtype in architecture_facts["lambda_resnet50_state_dict"]]
    actual = [
        (k, list(t.shape), str(t.dtype).removeprefix("torch."))
        for k, t in create_model("lambda_resnet50").state_dict().items()
    ]
    assert actual == expected


@pytest.mark.parametrize("name", LAMBDA_RESNETS)
def test_counts_match_published_code(architecture_facts, name):
    facts = architecture_facts["architectures"][name]
    model = create_model(name)
    assert len(model.state_dict()) == facts["state_dict_entries"]
    assert count_params(model) == facts["params"]
    assert count_macs(model, (1, 3, 224, 224)) == facts["macs_224"]


def test_resnet50_baseline_counts():
    model = create_model("resnet50")
    assert count_params(model) == 25_557_032
    assert count_macs(model, (1, 3, 224, 224)) == 4_089_184_256


def test_count_macs_scales_with_batch_and_restores_mode():
    model = create_model("lambda_resnet26").train()
    one = count_macs(model, (1, 3, 64, 64))
    assert count_macs(model, (2, 3, 64, 64)) == 2 * one
    assert model.training


@pytest.mark.parametrize(("stride", "out_hw"), [(1, (9, 7)), (2, (5, 4))])
def test_lambda_layer_shapes(stride, out_hw):
    layer = LambdaLayer(32, stride=stride)
    out = layer(torch.randn(2, 32, 9, 7))
    assert out.shape == (2, 32, *out_hw)


def test_lambda_layer_rejects_bad_config():
    with pytest.raises(ValueError, match="divisible by heads"):
        LambdaLayer(30)
    with pytest.raises(ValueError, match="stride"):
        LambdaLayer(32, stride=3)
    with pytest.raises(ValueError, match="unknown lambda implementation"):
        LambdaLayer(32, implementation="magic")


def test_num_classes_changes_only_the_classifier():
    model = create_model("lambda_resnet50", num_classes=10)
    assert model.fc.weight.shape == (10, 2048)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_layer_shape_table_is_what_lambda_resnet50_runs_at_224():
    from collections import Counter

    from lambda_repro.profiling.layer_shapes import LAMBDA_RESNET50_LAYER_SHAPES

    model = create_model("lambda_resnet50").eval()
    seen = Counter()
    hooks = [
        m.register_forward_pre_hook(lambda m, args: seen.update([(m.channels, m.stride, args[0].shape[-1])]))
        for m in model.modules()
        if isinstance(m, LambdaLayer)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    assert seen == {(c, s, side): n for c, s, side, n in LAMBDA_RESNET50_LAYER_SHAPES}
