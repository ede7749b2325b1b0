"""Model name -> constructor registry, so stages and tools pick architectures by name.

The registry also answers which options a model takes (:func:`supported_options`), so
that no caller decides "is this a lambda model?" by its name.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a constructor under its function name; a second one of the same name replaces it, with a warning."""
    if fn.__name__ in _MODELS and _MODELS[fn.__name__] is not fn:
        warnings.warn(
            f"model {fn.__name__!r} registered twice: the later constructor replaces the earlier", stacklevel=2
        )
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def _constructor(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture by name, e.g. ``create_model("lambda_resnet50")``.

    Keyword arguments go to the constructor (``num_classes``, and for Lambda-ResNets
    ``lambda_implementation``: see :func:`supported_options`).
    """
    return _constructor(name)(**kwargs)


def supported_options(name: str) -> frozenset[str]:
    """The keyword arguments model ``name`` takes: its constructor's, or (``**kwargs``) its returned class's."""
    constructor = _constructor(name)
    names = _keywords(constructor)
    if inspect.Parameter.VAR_KEYWORD in names.values():
        returned = typing.get_type_hints(constructor).get("return")
        if inspect.isclass(returned) and returned is not nn.Module:
            names = {**_keywords(returned.__init__), **names}
    return frozenset(n for n, kind in names.items() if kind is not inspect.Parameter.VAR_KEYWORD and n != "self")


def options_for(name: str, **options) -> dict:
    """``options`` less those model ``name`` does not take (e.g. ``lambda_implementation`` for ResNet-50)."""
    supported = supported_options(name)
    return {key: value for key, value in options.items() if key in supported}


def _keywords(fn: Callable) -> dict[str, inspect._ParameterKind]:
    return {p.name: p.kind for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_POSITIONAL}
