"""The pipeline's parameters: load ``params.yaml`` and check it before any work starts.

Every mistake becomes a one-line :class:`ParamError` naming the dotted parameter, e.g.
``train.base_lr: must be > 0, got -0.1 (params.yaml)``. The schema below is the single
place that knows each knob's type and range; a stage checks only the sections it reads
(:data:`STAGE_SECTIONS`). Sections the schema does not describe (added by later stages)
are accepted as they are, but unknown keys inside a described section are typos and fail
with a "did you mean ...?" hint.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lambda_repro.models import lambda_layer, list_models
from lambda_repro.param_types import (
    Param,
    ParamError,
    boolean,
    choice,
    device,
    int_list,
    integer,
    nullable_number,
    number,
    path,
    schema_of,
    text,
)
from lambda_repro.training.recipe import TrainConfig


def _lambda_implementations() -> tuple:
    # Read at check time: implementations are added to lambda_layer over time (``auto`` is one of them).
    return tuple(lambda_layer.IMPLEMENTATIONS)


SCHEMA: dict[str, Any] = {
    "seed": integer(minimum=0),
    "preset": path(nullable=True),
    "model": {
        "name": choice(lambda: tuple(list_models())),
        "lambda_implementation": choice(_lambda_implementations),
    },
    "data": {
        "root": path(nullable=True),
        "output": path(),
        "manifest": path(),
        "skip_undecodable": boolean(),
        "verify": choice(lambda: ("full", "header", "none")),
        "verify_workers": integer(minimum=1, nullable=True),
        "expect_full_imagenet": boolean(),
        "source": choice(lambda: ("synthetic", "fashion_mnist")),
        "fashion_mnist": {
            "path": path(nullable=True),
            "train_per_class": integer(minimum=1, maximum=6000),
            "val_per_class": integer(minimum=1, maximum=1000),
            "image_size": integer(minimum=8),
        },
        "synthetic": {
            "classes": integer(minimum=2),
            "train_per_class": integer(minimum=1),
            "val_per_class": integer(minimum=1),
            "min_size": integer(minimum=8),
            "max_size": integer(minimum=8),
        },
    },
    "train": schema_of(TrainConfig),
    "distributed": {
        "nproc_per_node": integer(minimum=1),
        "nnodes": integer(minimum=1),
        "node_rank": integer(minimum=0),
        "master_addr": text(),
        "master_port": integer(minimum=1, maximum=65535),
        "backend": choice(lambda: ("auto", "gloo", "nccl")),
        "max_restarts": integer(minimum=0),
    },
    "evaluate": {
        "checkpoint": path(nullable=True),
        "image_size": integer(minimum=8),
        "batch_size": integer(minimum=1),
    },
    "profile": {
        "baseline": choice(lambda: tuple(list_models())),
        "resolution": integer(minimum=8),
        "device": device(),
        "precision": choice(lambda: ("fp32", "bf16", "fp16")),
        "channels_last": choice(lambda: ("auto", True, False)),
        "train_batch_sizes": int_list(minimum=1),
        "inference_batch_sizes": int_list(minimum=1),
        "warmup": integer(minimum=0),
        "repeats": integer(minimum=1),
        "min_repeats": integer(minimum=1),
        "iters_per_repeat": integer(minimum=1),
        "latency_repeats": integer(minimum=1),
        "max_seconds": nullable_number(gt=0),
        "threads": integer(minimum=1, nullable=True),
        "gpu_sample_interval_s": number(gt=0),
        "max_ratio_ci_width": number(gt=0),
        "layer_batch": integer(minimum=1),
        "layer_repeats": integer(minimum=0),
        "scaling_sides": int_list(minimum=8),
        "scaling_resolutions": int_list(minimum=64),
        "scaling_repeats": integer(minimum=0),
        "loader_images": integer(minimum=0),
    },
    "report": {
        "output_dir": path(),
        "top1_tolerance": number(ge=0),
        "top5_tolerance": number(ge=0),
        "min_epochs": integer(minimum=1),
        "log_to_mlflow": boolean(),
    },
    "tracking": {
        "uri": text(),
        "experiment": text(),
        "system_metrics": boolean(),
        "system_metrics_interval_s": number(gt=0),
    },
}

# The top-level entries each stage reads (and so must exist). A section missing from
# SCHEMA may still be listed here: it is then required but its content is not checked.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("seed", "data"),
    "train": ("seed", "model", "train", "distributed", "tracking"),
    "evaluate": ("model", "evaluate", "train", "distributed", "tracking"),
    "profile": ("model", "train", "profile"),
    "report": ("report", "tracking"),
}
STAGES = (*STAGE_SECTIONS, "all")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read a params YAML file; a missing, unreadable or non-mapping file is a one-line :class:`ParamError`."""
    path = Path(path)
    try:
        content = path.read_text()
    except FileNotFoundError:
        raise ParamError(f"params file not found: {path}") from None
    except OSError as err:
        raise ParamError(f"cannot read params file {path}: {err.strerror or err}") from None
    try:
        params = yaml.safe_load(content)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: must be a mapping of sections, got {type(params).__name__}")
    return params


# Read by dvc.yaml itself (paths it interpolates), which sees params.yaml only: a preset must not change them.
FIXED_BY_PARAMS_YAML = ("preset", "train.checkpoint", "evaluate.checkpoint")


def load_effective_params(path: str | os.PathLike = "params.yaml") -> dict:
    """The params a run uses: ``path``, with the overlay its ``preset:`` names merged over it.

    A preset holds only the values that differ from params.yaml (e.g. the published ImageNet
    recipe); every key it sets must exist in params.yaml, so a typo in a preset is an error,
    not a silently ignored knob. ``preset`` keeps naming the overlay in the result.
    """
    params = load_params(path)
    preset = params.get("preset")
    if preset is None:
        return params
    if not isinstance(preset, str) or not preset:
        raise ParamError(f"preset: must be a path to a YAML overlay, got {_show(preset)} ({path})")
    overlay = load_params(preset)
    for dotted in FIXED_BY_PARAMS_YAML:
        section, _, key = dotted.partition(".")
        if key in overlay.get(section, {}) if key else section in overlay:
            raise ParamError(f"{dotted}: set it in params.yaml, not in a preset (dvc.yaml reads it there) ({preset})")
    return merge_overlay(params, overlay, source=str(preset))


def merge_overlay(base: Mapping[str, Any], overlay: Mapping[str, Any], *, source: str, prefix: str = "") -> dict:
    """``base`` with the values of ``overlay`` replacing its own, section by section (lists replace whole)."""
    merged = dict(base)
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=1, cutoff=0.6)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ParamError(f"{dotted}: not in params.yaml, so a preset cannot set it{hint} ({source})")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping):
            merged[key] = merge_overlay(base[key], value, source=source, prefix=f"{dotted}.")
        else:
            merged[key] = value
    return merged


def validate_params(
    params: Mapping[str, Any],
    stage: str,
    *,
    source: str = "params.yaml",
    check_paths: bool = True,
) -> None:
    """Check the parameters ``stage`` reads; the first problem raises a one-line :class:`ParamError`.

    Args:
        params: the loaded params (see :func:`load_params`).
        stage: ``prepare``, ``train``, ``evaluate``, ``profile``, ``report``, or ``all``.
        source: where the params came from, quoted at the end of every message.
        check_paths: check that ``data.root`` and ``evaluate.checkpoint`` exist on this
            machine (off to check a preset written for another machine).
    """
    if stage not in STAGES:
        raise ParamError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if not isinstance(params, Mapping):
        raise ParamError(f"params must be a mapping of sections, got {type(params).__name__} ({source})")
    if stage == "all":
        sections = tuple(dict.fromkeys(s for names in STAGE_SECTIONS.values() for s in names))
        _check_top_level_typos(params, source)
    else:
        sections = STAGE_SECTIONS[stage]
    for name in sections:
        if name not in params:
            raise ParamError(f"{name}: missing (needed by stage {stage!r}) ({source})")
        if name in SCHEMA:
            _check_entry(name, params[name], SCHEMA[name], source)
    _check_relations(params, stage, sections, source, check_paths)


def _check_top_level_typos(params: Mapping[str, Any], source: str) -> None:
    # Unknown top-level sections are accepted (later stages add their own), unless one is
    # a near miss of a known name: "trian" is a typo, "profile" is a new section.
    known = set(SCHEMA) | {s for names in STAGE_SECTIONS.values() for s in names}
    for key in params:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.8)
        if close:
            raise ParamError(f"{key}: unknown section; did you mean {close[0]!r}? ({source})")


def _check_entry(name: str, value: Any, spec: Any, source: str) -> None:
    if isinstance(spec, dict):
        _check_section(name, value, spec, source)
    else:
        _check_value(name, value, spec, source)


def check_given_values(name: str, values: Mapping[str, Any], *, source: str = "arguments") -> None:
    """Check the knobs of section ``name`` that ``values`` holds (a partial section, e.g. overrides in code).

    The same checks as params.yaml's, so a config built in code is held to the one description.
    """
    schema = SCHEMA[name]
    _check_known_keys(name, values, schema, source)
    for key, value in values.items():
        _check_entry(f"{name}.{key}", value, schema[key], source)


def _check_known_keys(name: str, section: Mapping[str, Any], schema: dict[str, Any], source: str) -> None:
    for key in section:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean {name}.{close[0]}?" if close else f"; known: {', '.join(schema)}"
            raise ParamError(f"{name}.{key}: unknown parameter{hint} ({source})")


def _check_section(name: str, section: Any, schema: dict[str, Any], source: str) -> None:
    if not isinstance(section, Mapping):
        raise ParamError(f"{name}: must be a section (mapping), got {_show(section)} ({source})")
    _check_known_keys(name, section, schema, source)
    for key, spec in schema.items():
        dotted = f"{name}.{key}"
        if key not in section:
            raise ParamError(f"{dotted}: missing ({source})")
        _check_entry(dotted, section[key], spec, source)


def _check_value(name: str, value: Any, spec: Param, source: str) -> None:
    if value is None:
        if spec.nullable:
            return
        raise ParamError(f"{name}: must be {spec.type_name}, got null ({source})")
    if spec.choices is not None:
        options = spec.choices()
        # bool == int in Python: compare with the type so that 1 is not taken for true.
        if not any(value == option and type(value) is type(option) for option in options):
            shown = ", ".join(_show(o) for o in options)
            close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamError(f"{name}: must be one of {shown}, got {_show(value)}{hint} ({source})")
        return
    # bool is an int subclass; "true" is never a valid integer or number here.
    if isinstance(value, bool) and bool not in spec.types or not isinstance(value, spec.types):
        hint = ""
        if float in spec.types and isinstance(value, str) and _is_float_text(value):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
        raise ParamError(f"{name}: must be {spec.type_name}, got {_show(value)}{hint} ({source})")
    problem = spec.check(value) if spec.check else None
    if problem:
        raise ParamError(f"{name}: {problem}, got {_show(value)} ({source})")


def _check_relations(
    params: Mapping[str, Any], stage: str, sections: tuple[str, ...], source: str, check_paths: bool
) -> None:
    """Rules that tie several knobs together, or the params to this machine."""
    if "train" in sections and "distributed" in sections:
        dist, train = params["distributed"], params["train"]
        world_size = dist["nproc_per_node"] * dist["nnodes"]
        accumulation = train["accumulation_steps"]
        if train["global_batch"] % (world_size * accumulation):
            raise ParamError(
                f"train.global_batch: must be divisible by the world size {world_size} "
                f"(distributed.nproc_per_node {dist['nproc_per_node']} x distributed.nnodes {dist['nnodes']}) "
                f"x train.accumulation_steps ({accumulation}), got {train['global_batch']} ({source})"
            )
        if train["warmup_epochs"] > train["epochs"]:
            raise ParamError(
                f"train.warmup_epochs: must be <= train.epochs ({train['epochs']}), "
                f"got {train['warmup_epochs']} ({source})"
            )
    if "distributed" in sections:
        dist = params["distributed"]
        if dist["node_rank"] >= dist["nnodes"]:
            raise ParamError(
                f"distributed.node_rank: must be < distributed.nnodes ({dist['nnodes']}), "
                f"got {dist['node_rank']} ({source})"
            )
    if "data" in sections:
        data = params["data"]
        synthetic = data["synthetic"]
        if synthetic["min_size"] > synthetic["max_size"]:
            raise ParamError(
                f"data.synthetic.min_size: must be <= data.synthetic.max_size ({synthetic['max_size']}), "
                f"got {synthetic['min_size']} ({source})"
            )
        if check_paths and data["root"] is not None:
            _check_imagenet_root(data["root"], source)
    if "evaluate" in sections and check_paths:
        checkpoint = params["evaluate"]["checkpoint"]
        # Checked up front ("all") it may still be the train stage's output to come.
        trained = stage == "all" and checkpoint == params.get("train", {}).get("checkpoint")
        if checkpoint is not None and not trained and not Path(checkpoint).is_file():
            raise ParamError(f"evaluate.checkpoint: file not found: {checkpoint} ({source})")


def _check_imagenet_root(root: str, source: str) -> None:
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise ParamError(f"data.root: ImageNet root not found: {root} ({source})")
    missing = [split for split in ("train", "val") if not (root_path / split).is_dir()]
    if missing:
        raise ParamError(
            f"data.root: {root} has no {' or '.join(f'{m}/' for m in missing)} directory "
            f"(expected ImageNet's train/ and val/) ({source})"
        )


def _is_float_text(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, kept to one short line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    shown = repr(value) if isinstance(value, str) else str(value)
    shown = shown.replace("\n", " ")
    return shown if len(shown) <= 80 else shown[:77] + "..."
