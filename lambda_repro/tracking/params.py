"""Turning the pipeline's nested params into MLflow params (flat string keys, bounded values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# MLflow's limits (mlflow.utils.validation): values longer than this are refused.
MAX_PARAM_VALUE_CHARS = 6000
MAX_TAG_VALUE_CHARS = 8000
TRUNCATION_MARK = "...[truncated]"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}``: nested keys joined with dots, values as text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def truncate(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, visibly marked when cut."""
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
