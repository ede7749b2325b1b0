"""Which formulation each lambda layer runs: measured per key, inspectable, pinnable."""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import (
    LambdaLayer,
    benchmark_formulations,
    create_model,
    formulation_choices,
    pin_formulations,
)
from lambda_repro.models.lambda_formulations import chooser
from lambda_repro.models.lambda_formulations.chooser import FormulationChooser, pick_fastest


def fake_timings(monkeypatch, seconds: dict[str, float]) -> list[tuple[str, bool]]:
    """Replace the stopwatch: each candidate 'takes' ``seconds[name]``; returns the calls made."""
    calls = []

    def timed(self, name, inputs, height, width, training):
        calls.append((name, training))
        return seconds[name]

    monkeypatch.setattr(FormulationChooser, "_time", timed)
    return calls


def test_pick_fastest_keeps_the_rule_within_the_margin_and_switches_beyond():
    assert pick_fastest({"reference": 1.0, "spectral": 1.04}, preferred="spectral") == "spectral"
    assert pick_fastest({"reference": 1.0, "spectral": 1.06}, preferred="spectral") == "reference"
    assert pick_fastest({"reference": 2.0, "dense": 1.0, "spectral": 3.0}, preferred="spectral") == "dense"


def test_candidates_leave_dense_out_on_large_maps():
    assert chooser.candidate_formulations(28, 28) == ("reference", "dense", "spectral")
    assert chooser.candidate_formulations(56, 56) == ("reference", "spectral")


def test_auto_follows_the_rule_until_benchmarking_is_enabled(monkeypatch):
    calls = fake_timings(monkeypatch, {"reference": 1.0, "dense": 5.0, "spectral": 9.0})
    layer = LambdaLayer(16)
    layer(torch.randn(1, 16, 6, 6))
    assert layer.last_formulation == "dense" and calls == []
    benchmark_formulations(layer)
    layer(torch.randn(1, 16, 6, 6))
    assert layer.last_formulation == "reference"
    assert sorted(calls) == [("dense", True), ("reference", True), ("spectral", True)]


def test_each_key_is_timed_once_and_modes_are_separate_keys(monkeypatch):
    calls = fake_timings(monkeypatch, {"reference": 3.0, "dense": 1.0, "spectral": 2.0})
    model = create_model("lambda_resnet26", num_classes=10)
    measured = benchmark_formulations(model)
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()  # training: parameters require grad
    first = len(calls)
    model(x).sum().backward()
    assert len(calls) == first  # same keys: nothing timed again
    with torch.no_grad():
        model.eval()(x)
    assert len(calls) > first and all(not training for _, training in calls[first:])
    modes = {key[-1] for key in measured.timings}
    assert modes == {"train", "inference"}
    # One chooser for the model: layers of the same shape share a key (8 layers, fewer keys).
    assert len({key for key in measured.timings if key[-1] == "train"}) < 8


def test_choices_name_every_layer_and_pins_are_obeyed(monkeypatch):
    fake_timings(monkeypatch, {"reference": 1.0, "dense": 2.0, "spectral": 3.0})
    model = create_model("lambda_resnet26", num_classes=10)
    assert formulation_choices(model) == {}  # auto layers that never ran have no choice yet
    benchmark_formulations(model)
    model(torch.randn(2, 3, 32, 32))
    choices = formulation_choices(model)
    names = [name for name, m in model.named_modules() if isinstance(m, LambdaLayer)]
    assert list(choices) == names and set(choices.values()) == {"reference"}

    pinned = dict.fromkeys(names, "spectral") | {names[0]: "dense"}
    pin_formulations(model, pinned)
    model(torch.randn(2, 3, 32, 32))
    assert formulation_choices(model) == pinned
    assert [model.get_submodule(n).last_formulation for n in names] == list(pinned.values())


def test_same_pins_give_bit_identical_results(monkeypatch):
    fake_timings(monkeypatch, {"reference": 3.0, "dense": 2.0, "spectral": 1.0})
    torch.manual_seed(0)
    a = create_model("lambda_resnet26", num_classes=10)
    b = create_model("lambda_resnet26", num_classes=10)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 48)
    benchmark_formulations(a)
    a(x)
    pin_formulations(b, formulation_choices(a))
    pin_formulations(a, formulation_choices(a))
    assert set(formulation_choices(b).values()) == {"spectral"}
    assert torch.equal(a(x), b(x))


def test_pin_rejects_unknown_layers_and_formulations_changing_nothing():
    model = create_model("lambda_resnet26", num_classes=10)
    with pytest.raises(ValueError, match=r"not lambda layers of this model: \['fc'\]"):
        pin_formulations(model, {"layer1.0.conv2": "dense", "fc": "dense"})
    with pytest.raises(ValueError, match=r"unknown formulations: \['fft'\]"):
        pin_formulations(model, {"layer1.0.conv2": "fft"})
    assert model.layer1[0].conv2.implementation == "auto"


def test_real_measurement_picks_a_candidate_and_records_seconds():
    layer = LambdaLayer(16)
    measured = benchmark_formulations(layer, repeats=1)
    with torch.no_grad():
        layer(torch.randn(1, 16, 8, 8))
    (seconds,) = measured.timings.values()
    assert set(seconds) == {"reference", "dense", "spectral"}
    assert all(s > 0 for s in seconds.values())
    assert layer.last_formulation == pick_fastest(seconds, "dense")
