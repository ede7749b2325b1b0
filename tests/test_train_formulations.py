"""Lambda formulations during training: recorded in the checkpoint and MLflow, pinned on resume, measured once."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lambda_repro.config import load_params
from lambda_repro.distributed import DistributedContext
from lambda_repro.evaluation.worker import EvaluationJob, score_job
from lambda_repro.models import LambdaLayer, create_model, read_checkpoint, save_checkpoint
from lambda_repro.models.lambda_formulations.chooser import FORMULATIONS, FormulationChooser
from lambda_repro.training import train
from lambda_repro.training.formulations import agree_on_formulations, formulation_params
from tests.test_train_resume import SINGLE, manifest, tiny_config  # noqa: F401 (manifest: a fixture)

CPU = torch.device("cpu")


def two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(LambdaLayer(16), LambdaLayer(16, stride=2))


def test_recorded_choices_win_over_measurement_and_are_pinned():
    model = two_layers()
    choices = agree_on_formulations(
        model, SINGLE, recorded={"0": "reference", "1": "spectral"}, measure=True, batch_shape=(2, 16, 8, 8)
    )
    assert choices == {"0": "reference", "1": "spectral"}
    assert [m.implementation for m in model] == ["reference", "spectral"]
    assert formulation_params(model) == {"derived.lambda_formulations": "0=reference,1=spectral"}


def test_without_record_or_measurement_nothing_is_pinned():
    model = two_layers()
    assert agree_on_formulations(model, SINGLE, recorded=None, measure=False, batch_shape=(2, 16, 8, 8)) == {}
    assert [m.implementation for m in model] == ["auto", "auto"]
    assert formulation_params(model) == {}  # auto layers that never ran have no choice yet


def test_measurement_leaves_batchnorm_statistics_and_random_state_alone():
    model = two_layers()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    choices = agree_on_formulations(model, SINGLE, recorded=None, measure=True, batch_shape=(2, 16, 8, 8))
    assert set(choices) == {"0", "1"} and set(choices.values()) <= set(FORMULATIONS)
    assert [m.implementation for m in model] == [choices["0"], choices["1"]]
    assert torch.equal(torch.get_rng_state(), rng)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_inference_measurement_runs_on_a_channels_last_batch_in_eval_mode(monkeypatch):
    """What evaluate asks for when a GPU user turns channels_last on: forced on here, on CPU."""
    seen: list = []

    def fake_time(self, name, inputs, height, width, training):
        seen.append((training, torch.is_grad_enabled()))
        return 1.0 if name == "reference" else 2.0

    monkeypatch.setattr(FormulationChooser, "_time", fake_time)
    model = two_layers().to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    choices = agree_on_formulations(
        model, SINGLE, recorded=None, measure=True, batch_shape=(2, 16, 8, 8), training=False,
        memory_format=torch.channels_last,
    )  # fmt: skip
    assert choices == {"0": "reference", "1": "reference"}
    assert seen and set(seen) == {(False, False)}  # timed in inference mode, without grad
    assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())  # eval mode: statistics kept


def _measure_on_rank(rank: int, world_size: int, init_file: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        context = DistributedContext(rank, rank, world_size, CPU, "gloo")
        model = two_layers()
        if rank == 1:
            model[0].implementation = model[1].implementation = "reference"  # overruled by rank 0's choice
        agree_on_formulations(model, context, recorded=None, measure=True, batch_shape=(2, 16, 8, 8))
        results[rank] = [m.implementation for m in model]
    finally:
        dist.destroy_process_group()


def test_measured_choice_is_rank_zeros_on_every_rank(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_measure_on_rank, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        results = dict(results)
    assert results[0] == results[1]
    assert set(results[0]) <= set(FORMULATIONS)  # concrete formulations, nothing left "auto"


@pytest.mark.slow
def test_resume_pins_the_checkpoints_choices(manifest, tmp_path, monkeypatch):  # noqa: F811
    config = tiny_config(manifest, tmp_path)
    monkeypatch.setenv("LAMBDA_REPRO_FAULT_TERM_AT_STEP", "3")  # epoch 2, step 1
    assert train(config, SINGLE).status == "preempted"
    saved = read_checkpoint(config.checkpoint)
    assert saved["lambda_formulations"] and set(saved["lambda_formulations"].values()) == {
        "dense"
    }  # the rule, <= 20x20
    # A run that had measured "reference" everywhere: its resumed part must run it too.
    saved["lambda_formulations"] = dict.fromkeys(saved["lambda_formulations"], "reference")
    torch.save(saved, config.checkpoint)
    monkeypatch.delenv("LAMBDA_REPRO_FAULT_TERM_AT_STEP")
    assert train(config, SINGLE).status == "finished"
    finished = read_checkpoint(config.checkpoint)
    assert set(finished["lambda_formulations"].values()) == {"reference"}
    assert finished["lambda_formulations"].keys() == saved["lambda_formulations"].keys()


def test_measured_is_a_model_setting_that_builds_auto_layers_and_asks_the_trainer_to_measure():
    import yaml

    from lambda_repro.config import validate_params
    from lambda_repro.training import TrainConfig
    from lambda_repro.training.recipe import model_options

    shipped = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    params = {**shipped, "model": {**shipped["model"], "lambda_implementation": "measured"}}
    validate_params(params, "all", check_paths=False)
    config = TrainConfig.from_params(params, world_size=2)
    assert config.measure_formulations and config.model_kwargs == {"lambda_implementation": "auto"}
    assert model_options(params["model"]) == {"lambda_implementation": "auto"}  # what evaluate / profile build
    assert not TrainConfig.from_params(shipped, world_size=2).measure_formulations


def _reference_fastest(modes: list):
    def fake_time(self, name, inputs, height, width, training):
        modes.append(training)
        return 1.0 if name == "reference" else 2.0

    return fake_time


def test_evaluation_measures_for_inference_pins_and_records(manifest, tmp_path, monkeypatch):  # noqa: F811
    """``measure_formulations``: the evaluation times the formulations for inference (faked here: reference
    fastest), every layer runs the choice, and the scores say what ran; without it the rule runs, same function."""
    modes: list = []
    monkeypatch.setattr(FormulationChooser, "_time", _reference_fastest(modes))
    torch.manual_seed(0)
    model = create_model("lambda_resnet26", num_classes=2)
    with torch.no_grad():  # BatchNorm statistics of real activations, so that the untrained logits stay finite
        model.train()(torch.rand(8, 3, 32, 32))
    checkpoint = tmp_path / "c.pt"
    save_checkpoint({"state_dict": model.state_dict()}, checkpoint)
    job = EvaluationJob(str(checkpoint), "lambda_resnet26", manifest, 32, 4, measure_formulations=True, progress=False)
    measured = score_job(job, SINGLE)
    layers = len([m for m in create_model("lambda_resnet26").modules() if isinstance(m, LambdaLayer)])
    assert list(measured["lambda_formulations"].values()) == ["reference"] * layers
    assert measured["lambda_formulations_measured"] is True
    assert modes and not any(modes)  # timed in inference mode only
    modes.clear()
    rule = score_job(dataclasses.replace(job, measure_formulations=False), SINGLE)
    assert not modes and rule["lambda_formulations_measured"] is False
    assert set(rule["lambda_formulations"].values()) <= {"dense", "spectral"}  # the rule never picks reference
    # Same function, other float32 rounding: the untrained logits are ~1e12, so the loss differs by ~1e-5
    # relative between formulations (1.6e-5 in one full run, 0 alone); a wrong formulation is off by far more.
    assert math.isfinite(measured["loss"]) and rule["loss"] == pytest.approx(measured["loss"], rel=1e-4)
    assert (rule["top1"], rule["top5"]) == (measured["top1"], measured["top5"])


def test_the_evaluate_stage_measures_when_the_model_section_says_measured():
    from pipelines.evaluate import evaluation_formulation_params, evaluation_job

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert evaluation_job(params).measure_formulations is (params["model"]["lambda_implementation"] == "measured")
    params["model"]["lambda_implementation"] = "measured"
    job = evaluation_job(params)
    assert job.measure_formulations is True and job.model_kwargs["lambda_implementation"] == "auto"
    metrics = {
        "lambda_formulations": {"b.lambda": "dense", "a.lambda": "spectral"},
        "lambda_formulations_measured": True,
    }
    assert evaluation_formulation_params(metrics) == {
        "eval.lambda_formulations": "a.lambda=spectral,b.lambda=dense",
        "eval.lambda_formulations_measured": True,
    }
    assert evaluation_formulation_params({"lambda_formulations": {}, "lambda_formulations_measured": False}) == {}
