"""validate_params / load_params: every bad knob is a one-line error naming the dotted param."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lambda_repro.config import STAGE_SECTIONS, ParamError, load_params, merge_overlay, validate_params
from lambda_repro.models import lambda_layer

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_params(PROJECT_ROOT / "params.yaml")


def with_change(params: dict, dotted: str, value) -> dict:
    changed = copy.deepcopy(params)
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[leaf] = value
    return changed


def error_for(params: dict, stage: str = "all", **kwargs) -> str:
    with pytest.raises(ParamError) as info:
        validate_params(params, stage, **kwargs)
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return message


def test_shipped_params_validate_for_every_stage(shipped):
    validate_params(shipped, "all")  # evaluate.checkpoint may be the train stage's output, not there yet
    for stage in STAGE_SECTIONS:
        validate_params(shipped, stage, check_paths=False)
    validate_params(shipped, "prepare")


def test_presets_validate(shipped, tmp_path):
    presets = sorted((PROJECT_ROOT / "pipelines" / "presets").glob("*.yaml"))
    for preset in presets:
        params = merge_overlay(shipped, load_params(preset), source=preset.name)  # an overlay of params.yaml
        # A preset is written for another machine (an ImageNet root that is not here):
        # check its knobs without the filesystem, then with a stand-in root.
        validate_params(params, "all", source=preset.name, check_paths=False)
        if isinstance(params.get("data"), dict) and params["data"].get("root"):
            (tmp_path / "train").mkdir(exist_ok=True)
            (tmp_path / "val").mkdir(exist_ok=True)
            validate_params(with_change(params, "data.root", str(tmp_path)), "all", source=preset.name)


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("model.name", "lambda_resnet5", "model.name: must be one of"),
        ("model.lambda_implementation", "magic", "model.lambda_implementation: must be one of"),
        ("train.base_lr", -0.1, "train.base_lr: must be > 0, got -0.1 (params.yaml)"),
        ("train.base_lr", 0, "train.base_lr: must be > 0, got 0"),
        ("train.base_lr", "1e-4", "train.base_lr: must be a number, got '1e-4' (YAML reads 1e-4 as text"),
        ("train.epochs", 0, "train.epochs: must be >= 1, got 0"),
        ("train.epochs", True, "train.epochs: must be an integer, got true"),
        ("train.epochs", 2.5, "train.epochs: must be an integer, got 2.5"),
        ("train.precision", "fp8", "train.precision: must be one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
        ("train.channels_last", "yes", "train.channels_last: must be one of 'auto', true, false, got 'yes'"),
        ("train.momentum", 1.0, "train.momentum: must be < 1"),
        ("train.checkpoint", None, "train.checkpoint: must be a path, got null"),
        ("distributed.backend", "mpi", "distributed.backend: must be one of 'auto', 'gloo', 'nccl', got 'mpi'"),
        ("distributed.master_port", 70000, "distributed.master_port: must be <= 65535"),
        ("distributed.max_restarts", -1, "distributed.max_restarts: must be >= 0"),
        ("distributed.node_rank", 1, "distributed.node_rank: must be < distributed.nnodes (1), got 1"),
        ("tracking.system_metrics_interval_s", 0, "tracking.system_metrics_interval_s: must be > 0"),
        ("tracking.experiment", " ", "tracking.experiment: must not be empty"),
        ("data.synthetic.min_size", 200, "data.synthetic.min_size: must be <= data.synthetic.max_size (96)"),
        ("data.synthetic", [1], "data.synthetic: must be a section (mapping), got a list"),
        ("data.verify_workers", 0, "data.verify_workers: must be >= 1, got 0"),
        ("profile.train_batch_sizes", [8, 0], "profile.train_batch_sizes: must be a list of integers >= 1"),
        ("profile.inference_batch_sizes", 8, "profile.inference_batch_sizes: must be a list of integers >= 1, got 8"),
        ("profile.device", "gpu", "profile.device: must be auto, cpu, cuda or cuda:<index>, got 'gpu'"),
        ("profile.baseline", "resnet51", "profile.baseline: must be one of"),
        ("profile.max_seconds", -1, "profile.max_seconds: must be > 0, got -1"),
        ("report.min_epochs", 0, "report.min_epochs: must be >= 1, got 0"),
        ("report.log_to_mlflow", "yes", "report.log_to_mlflow: must be true or false, got 'yes'"),
    ],
)
def test_bad_value_names_the_param(shipped, dotted, value, expected):
    message = error_for(with_change(shipped, dotted, value))
    assert message.startswith(expected), message


def test_model_typo_suggests_the_name(shipped):
    assert "did you mean 'lambda_resnet50'?" in error_for(with_change(shipped, "model.name", "lambda_resnet5"))


def test_global_batch_not_divisible_by_world_size(shipped):
    params = with_change(shipped, "distributed.nproc_per_node", 3)
    message = error_for(params, "train")
    assert message.startswith("train.global_batch: must be divisible by the world size 3"), message
    assert "distributed.nproc_per_node" in message and "got 32" in message


def test_world_size_counts_nodes(shipped):
    params = with_change(with_change(shipped, "distributed.nnodes", 3), "train.global_batch", 36)
    validate_params(params, "train")
    assert "world size 6" in error_for(with_change(params, "train.global_batch", 32), "train")


def test_missing_imagenet_root(shipped, tmp_path):
    missing = tmp_path / "imagenet"
    message = error_for(with_change(shipped, "data.root", str(missing)), "prepare")
    assert message == f"data.root: ImageNet root not found: {missing} (params.yaml)"


def test_imagenet_root_without_val(shipped, tmp_path):
    (tmp_path / "train").mkdir()
    message = error_for(with_change(shipped, "data.root", str(tmp_path)), "prepare")
    assert message.startswith("data.root: ") and "no val/ directory" in message


def test_root_not_checked_when_paths_are_off(shipped, tmp_path):
    validate_params(with_change(shipped, "data.root", str(tmp_path / "absent")), "all", check_paths=False)


def test_profile_device_accepts_an_index(shipped):
    validate_params(with_change(shipped, "profile.device", "cuda:1"), "profile")


def test_evaluate_checkpoint_must_exist(shipped, tmp_path):
    for stage in ("evaluate", "all"):
        message = error_for(with_change(shipped, "evaluate.checkpoint", str(tmp_path / "x.pt")), stage)
        assert message.startswith("evaluate.checkpoint: file not found")
    trained_later = with_change(shipped, "train.checkpoint", str(tmp_path / "x.pt"))
    validate_params(with_change(trained_later, "evaluate.checkpoint", str(tmp_path / "x.pt")), "all")
    (tmp_path / "x.pt").write_bytes(b"")
    validate_params(with_change(shipped, "evaluate.checkpoint", str(tmp_path / "x.pt")), "evaluate")


def test_unknown_key_is_a_typo_with_a_suggestion(shipped):
    params = copy.deepcopy(shipped)
    params["train"]["base_lrr"] = 0.1
    assert error_for(params) == "train.base_lrr: unknown parameter; did you mean train.base_lr? (params.yaml)"


def test_missing_key_and_missing_section(shipped):
    params = copy.deepcopy(shipped)
    del params["train"]["epochs"]
    assert error_for(params, "train") == "train.epochs: missing (params.yaml)"
    params = copy.deepcopy(shipped)
    del params["distributed"]
    assert error_for(params, "train").startswith("distributed: missing (needed by stage 'train')")


def test_stage_checks_only_its_sections(shipped):
    params = with_change(shipped, "train.base_lr", -1.0)
    validate_params(params, "prepare")
    assert error_for(params, "train").startswith("train.base_lr")


def test_sections_added_later_are_accepted_but_near_misses_are_not(shipped):
    params = copy.deepcopy(shipped)
    params["benchmarks"] = {"batch_sizes": [1, 8], "anything": "new"}
    validate_params(params, "all")
    params["trian"] = {"epochs": 1}
    assert error_for(params) == "trian: unknown section; did you mean 'train'? (params.yaml)"


def test_implementation_choices_are_read_at_check_time(shipped, monkeypatch):
    params = with_change(shipped, "model.lambda_implementation", "fancy")
    error_for(params)
    monkeypatch.setattr(lambda_layer, "IMPLEMENTATIONS", (*lambda_layer.IMPLEMENTATIONS, "fancy"))
    validate_params(params, "all")


def test_source_is_named(shipped):
    message = error_for(with_change(shipped, "train.epochs", 0), source="presets/imagenet.yaml")
    assert message.endswith("(presets/imagenet.yaml)")


def test_unknown_stage():
    assert "unknown stage 'fit'" in error_for({}, "fit")


def test_load_params_errors(tmp_path):
    with pytest.raises(ParamError, match=r"^params file not found: .*nope\.yaml$"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ParamError, match=r"bad\.yaml: invalid YAML at line \d+, column \d+: "):
        load_params(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ParamError, match=r"bad\.yaml: must be a mapping of sections, got list"):
        load_params(bad)
    good = tmp_path / "good.yaml"
    good.write_text("seed: 3\ntrain: {epochs: 2}\n")
    assert load_params(good) == {"seed": 3, "train": {"epochs": 2}}
