"""The ImageNet preset is a complete params.yaml holding the published recipe."""

from __future__ import annotations

from pathlib import Path

import yaml

from lambda_repro.config import validate_params
from lambda_repro.training import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= keys(value, f"{prefix}{key}.")
    return out


def test_imagenet_preset_has_every_knob_of_params_yaml_and_validates():
    default = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    preset = yaml.safe_load((PROJECT_ROOT / "pipelines/presets/imagenet.yaml").read_text())
    assert keys(preset) == keys(default)
    validate_params(preset, "all", source="imagenet.yaml", check_paths=False)


def test_imagenet_preset_is_the_published_recipe():
    preset = yaml.safe_load((PROJECT_ROOT / "pipelines/presets/imagenet.yaml").read_text())
    train = preset["train"]
    assert preset["model"]["name"] == "lambda_resnet50"
    assert (train["epochs"], train["image_size"], train["global_batch"]) == (130, 224, 256)
    assert (train["momentum"], train["weight_decay"], train["label_smoothing"]) == (0.9, 1.0e-4, 0.1)
    assert preset["evaluate"]["image_size"] == 224
    world = preset["distributed"]["nproc_per_node"] * preset["distributed"]["nnodes"]
    config = TrainConfig(
        model="lambda_resnet50", manifest="-", epochs=130, image_size=224, global_batch=256, world_size=world
    )
    assert (config.peak_lr, config.per_process_batch) == (0.1, 32)
