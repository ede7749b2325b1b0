"""The model registry: names, the options each model takes, and a warning on a duplicate name."""

from __future__ import annotations

import pytest

from lambda_repro.models import _registry, create_model, list_models, options_for, register_model, supported_options


def test_lambda_models_take_the_formulation_and_resnet_does_not():
    for name in list_models():
        takes = "lambda_implementation" in supported_options(name)
        assert takes == name.startswith("lambda_resnet"), name
    assert options_for("resnet50", lambda_implementation="dense", num_classes=3) == {"num_classes": 3}


def test_resnet50_refuses_a_lambda_option_instead_of_dropping_it():
    with pytest.raises(TypeError):
        create_model("resnet50", lambda_implementation="dense")


def test_a_duplicate_name_warns_and_replaces(monkeypatch):
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))

    def resnet50(**kwargs):
        return "replacement"

    with pytest.warns(UserWarning, match="model 'resnet50' registered twice"):
        register_model(resnet50)
    assert create_model("resnet50") == "replacement"
