"""Model name -> constructor registry, so stages and tools pick architectures by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a constructor under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture by name, e.g. ``create_model("lambda_resnet50")``.

    Keyword arguments go to the constructor (``num_classes``, and for Lambda-ResNets
    ``lambda_implementation``).
    """
    try:
        constructor = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return constructor(**kwargs)
