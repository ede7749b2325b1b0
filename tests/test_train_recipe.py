"""One description per setting: TrainConfig's fields are the `train` knobs, with params.yaml's defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from lambda_repro.config import SCHEMA
from lambda_repro.param_types import settings_of, settings_table
from lambda_repro.profiling import BenchmarkConfig
from lambda_repro.reporting import ReportConfig
from lambda_repro.training import TrainConfig
from lambda_repro.training.optim import OPTIMIZERS, create_optimizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_train_section_is_trainconfigs_settings_with_their_defaults(shipped):
    fields = settings_of(TrainConfig)
    assert list(fields) == list(shipped["train"])  # same knobs, same order
    assert {name: f.default for name, f in fields.items()} == shipped["train"]
    assert all(f.metadata["doc"] for f in fields.values())
    assert SCHEMA["train"] == {name: f.metadata["param"] for name, f in fields.items()}


def test_benchmark_and_report_defaults_agree_with_params_yaml(shipped):
    profile_defaults = {f.name: f.default for f in dataclasses.fields(BenchmarkConfig)}
    for key, value in shipped["profile"].items():
        if key in profile_defaults:
            expected = tuple(value) if isinstance(value, list) else value
            assert profile_defaults[key] == expected, f"profile.{key}"
    report_defaults = {f.name: f.default for f in dataclasses.fields(ReportConfig)}
    assert {k: report_defaults[k] for k in shipped["report"]} == shipped["report"]


def test_from_params_reads_every_train_knob_and_the_sections_around(shipped):
    params = {**shipped, "train": {**shipped["train"], "base_lr": 0.4, "optimizer": "adamw"}}
    config = TrainConfig.from_params(params, world_size=2, metrics_dir="out")
    assert (config.base_lr, config.optimizer, config.metrics_dir, config.world_size) == (0.4, "adamw", "out", 2)
    assert config.manifest == shipped["data"]["manifest"] and config.seed == shipped["seed"]
    assert config.model_kwargs == {"lambda_implementation": shipped["model"]["lambda_implementation"]}
    assert config.peak_lr == pytest.approx(0.4 * shipped["train"]["global_batch"] / 256)
    baseline = TrainConfig.from_params({**shipped, "model": {**shipped["model"], "name": "resnet50"}}, world_size=1)
    assert baseline.model_kwargs == {}  # the registry says ResNet-50 takes no lambda formulation


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_factory_builds_each_choice_and_steps(name):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    optimizer = create_optimizer(name, layer.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert type(optimizer) is {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[name]
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 1e-4
    assert group.get("momentum", group.get("betas", (None,))[0]) == 0.9
    before = layer.weight.detach().clone()
    layer(torch.ones(3, 4)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; choose from sgd, adamw"):
        create_optimizer("lamb", [torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9, weight_decay=0.0)


def test_the_docs_table_of_train_knobs_is_generated_from_trainconfig():
    doc = (PROJECT_ROOT / "docs" / "pipeline.md").read_text()
    shown = doc.split("<!-- train-settings:start -->\n")[1].split("\n<!-- train-settings:end -->")[0]
    assert shown == settings_table(TrainConfig, "train")
    assert "| `train.base_lr` | a number > 0 | `0.2` |" in shown
