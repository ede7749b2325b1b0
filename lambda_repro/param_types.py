"""What one knob of params.yaml accepts (type, range, choices), and where a dataclass declares its knobs.

A config dataclass (e.g. :class:`lambda_repro.training.TrainConfig`) declares each knob once
with :func:`setting`: its check (one of the constructors below), its default (the value
params.yaml ships) and its doc. :func:`schema_of` turns those fields into the section
schema the params check reads, so type, range, default and doc live in one place.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ParamError(ValueError):
    """A parameter that is missing, mistyped or out of range; the message is one line."""


@dataclass(frozen=True)
class Param:
    """What one knob accepts.

    ``check`` returns ``None`` when the (type-correct) value is fine, else what is wrong
    ("must be > 0"); ``choices`` is a callable so that registries read at check time
    (models, lambda implementations) stay current.
    """

    types: tuple[type, ...]
    type_name: str
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None
    choices: Callable[[], tuple] | None = None
    is_path: bool = False
    limits: str = ""  # the range in words, for the docs ("<= 65535", "in [0, 1)")


def integer(minimum: int | None = None, maximum: int | None = None, nullable: bool = False) -> Param:
    def check(value: int) -> str | None:
        if minimum is not None and value < minimum:
            return f"must be >= {minimum}"
        if maximum is not None and value > maximum:
            return f"must be <= {maximum}"
        return None

    named = ((">=", minimum), ("<=", maximum))
    bounds = [f"{sign} {bound}" for sign, bound in named if bound is not None]
    return Param((int,), "an integer", nullable=nullable, check=check, limits=", ".join(bounds))


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None) -> Param:
    def check(value: float) -> str | None:
        if value != value or value in (float("inf"), float("-inf")):
            return "must be a finite number"
        if gt is not None and not value > gt:
            return f"must be > {gt:g}"
        if ge is not None and not value >= ge:
            return f"must be >= {ge:g}"
        if lt is not None and not value < lt:
            return f"must be < {lt:g}"
        return None

    named = ((">", gt), (">=", ge), ("<", lt))
    bounds = [f"{sign} {bound:g}" for sign, bound in named if bound is not None]
    return Param((int, float), "a number", check=check, limits=", ".join(bounds))


def choice(options: Callable[[], tuple]) -> Param:
    return Param((str, bool), "one of the listed choices", choices=options)


def boolean() -> Param:
    return Param((bool,), "true or false")


def text(nullable: bool = False) -> Param:
    return Param((str,), "a string", nullable=nullable, check=lambda v: None if v.strip() else "must not be empty")


def path(nullable: bool = False) -> Param:
    return Param((str,), "a path", nullable=nullable, is_path=True, check=lambda v: None if v else "must not be empty")


def int_list(minimum: int) -> Param:
    def check(values: list) -> str | None:
        if not values:
            return "must not be empty"
        if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
            return f"must be a list of integers >= {minimum}"
        return None

    return Param((list,), f"a list of integers >= {minimum}", check=check)


def nullable_number(gt: float) -> Param:
    return Param((int, float), "a number or null", nullable=True, check=number(gt=gt).check)


def device() -> Param:
    def check(value: str) -> str | None:
        if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            return None
        return "must be auto, cpu, cuda or cuda:<index>"

    return Param((str,), "a device name", check=check)


def setting(spec: Param, default: Any, doc: str) -> Any:
    """A dataclass field that is a params.yaml knob: its check, its default and its one-line doc."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"param": spec, "doc": doc})
    return dataclasses.field(default=default, metadata={"param": spec, "doc": doc})


def settings_of(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of dataclass ``cls`` declared with :func:`setting`, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls) if "param" in f.metadata}


def schema_of(cls: type) -> dict[str, Param]:
    """The params-check schema of the section ``cls`` describes: knob name -> :class:`Param`."""
    return {name: f.metadata["param"] for name, f in settings_of(cls).items()}


def section_of(cls: type, params_section: dict[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s knobs from a (checked) params section, ready for ``cls(**...)``."""
    return {name: params_section[name] for name in settings_of(cls)}


def settings_table(cls: type, section: str) -> str:
    """A Markdown table of ``cls``'s knobs (key, accepts, default, doc), as docs/pipeline.md shows them."""
    rows = ["| key | accepts | default | what it does |", "|---|---|---|---|"]
    for name, f in settings_of(cls).items():
        spec: Param = f.metadata["param"]
        accepts = f"{spec.type_name} {spec.limits}".strip()
        if spec.choices is not None:
            accepts = " / ".join(_yaml_text(c) for c in spec.choices())
        rows.append(f"| `{section}.{name}` | {accepts} | `{_yaml_text(f.default)}` | {f.metadata['doc']} |")
    return "\n".join(rows)


def _yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
