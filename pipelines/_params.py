"""Shared by the stage entry points: read and check params.yaml, and translate its sections for the library."""

from __future__ import annotations

import sys
from typing import Any

from lambda_repro.config import ParamError, load_params, validate_params
from lambda_repro.models import lambda_layer

__all__ = ["ParamError", "load_checked", "model_kwargs", "fail"]


def load_checked(path: str, stage: str) -> dict[str, Any]:
    """The params of ``path``, checked for ``stage`` before any work starts (raises :class:`ParamError`)."""
    params = load_params(path)
    validate_params(params, stage, source=path)
    return params


def model_kwargs(model: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``create_model`` for the ``model`` section.

    ``lambda_implementation`` applies to Lambda-ResNets only; ``auto`` leaves the layer's
    default when the library has no ``auto`` formulation.
    """
    implementation = model.get("lambda_implementation", "auto")
    if not model["name"].startswith("lambda_"):
        return {}
    if implementation == "auto" and "auto" not in lambda_layer.IMPLEMENTATIONS:
        return {}
    return {"lambda_implementation": implementation}


def fail(stage: str, message: str, code: int = 1) -> int:
    """Print a one-line error for ``stage`` and return the exit code."""
    print(f"{stage}: error: {message}", file=sys.stderr)
    return code
