"""Presets are overlays of params.yaml: the ImageNet one holds only what differs, merged by the params loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lambda_repro.config import ParamError, load_effective_params, load_params, merge_overlay, validate_params
from lambda_repro.training import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMAGENET = "pipelines/presets/imagenet.yaml"


def keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= keys(value, f"{prefix}{key}.")
    return out


def leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.fixture()
def imagenet_params(tmp_path, monkeypatch) -> dict:
    """params.yaml switched to the ImageNet preset (the documented one-line switch), loaded as a stage does."""
    monkeypatch.chdir(PROJECT_ROOT)
    text = (PROJECT_ROOT / "params.yaml").read_text()
    switched = tmp_path / "params.yaml"
    switched.write_text(text.replace("preset: null", f"preset: {IMAGENET}"))
    return load_effective_params(switched)


def test_imagenet_preset_has_every_knob_of_params_yaml_and_validates(imagenet_params):
    default = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert keys(imagenet_params) == keys(default)
    validate_params(imagenet_params, "all", source="imagenet.yaml", check_paths=False)


def test_imagenet_preset_holds_only_values_that_differ():
    default = leaves(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    overlay = leaves(yaml.safe_load((PROJECT_ROOT / IMAGENET).read_text()))
    assert overlay and all(default[key] != value for key, value in overlay.items())


def test_imagenet_preset_is_the_published_recipe(imagenet_params):
    preset = imagenet_params
    train = preset["train"]
    assert preset["model"]["name"] == "lambda_resnet50"
    assert (train["epochs"], train["image_size"], train["global_batch"]) == (130, 224, 256)
    assert (train["momentum"], train["weight_decay"], train["label_smoothing"]) == (0.9, 1.0e-4, 0.1)
    assert train["optimizer"] == "sgd"
    assert preset["evaluate"]["image_size"] == 224
    world = preset["distributed"]["nproc_per_node"] * preset["distributed"]["nnodes"]
    config = TrainConfig.from_params(preset, world_size=world)
    assert (config.peak_lr, config.per_process_batch) == (0.1, 32)


def test_an_overlay_key_missing_from_params_yaml_is_an_error():
    shipped = load_params(PROJECT_ROOT / "params.yaml")
    with pytest.raises(ParamError, match=r"^train\.epoch: not in params\.yaml.*did you mean train\.epochs\?"):
        merge_overlay(shipped, {"train": {"epoch": 3}}, source="mine.yaml")


def test_a_preset_cannot_move_the_paths_dvc_yaml_reads(tmp_path):
    overlay = tmp_path / "moves.yaml"
    overlay.write_text("train: {checkpoint: elsewhere.pt}\n")
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT_ROOT / "params.yaml").read_text().replace("preset: null", f"preset: {overlay}"))
    with pytest.raises(ParamError, match=r"^train\.checkpoint: set it in params\.yaml, not in a preset"):
        load_effective_params(params)
