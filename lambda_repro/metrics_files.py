"""A stage's results as two files: the few numbers a person compares, and their context.

``<name>.json`` holds numbers only (DVC metrics: ``dvc metrics show / diff`` and ``dvc exp show``
list them, so they stay few and short-named); ``<name>_info.json`` beside it holds what
describes them (settings, names, versions, counts), which is not a DVC metric.
:func:`read_metrics` merges the two again for readers such as the report.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

INFO_SUFFIX = "_info"


def info_path(metrics_path: str | os.PathLike) -> Path:
    """``metrics/eval.json`` -> ``metrics/eval_info.json``."""
    path = Path(metrics_path)
    return path.with_name(f"{path.stem}{INFO_SUFFIX}{path.suffix}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _number(value):
    """JSON has no NaN / inf: a non-finite figure is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | os.PathLike, metrics: dict, info: dict | None = None) -> None:
    """Write ``metrics`` (numbers, or null for a non-finite one) to ``path`` and ``info`` beside it."""
    for key, value in metrics.items():
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
            raise TypeError(f"metric {key!r}: DVC metrics are numbers, got {value!r} (put it in the info file)")
    atomic_write_text(path, json.dumps({k: _number(v) for k, v in metrics.items()}, indent=2) + "\n")
    if info is not None:
        atomic_write_text(info_path(path), json.dumps(info, indent=2, default=str) + "\n")


def read_metrics(path: str | os.PathLike) -> dict:
    """The numbers of ``path`` with its info file's entries (the numbers win on a shared key).

    Raises ``FileNotFoundError`` / ``ValueError`` like ``json.loads(Path(path).read_text())``;
    a missing info file is not an error (files written before the split have none).
    """
    metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        info = json.loads(info_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        info = {}
    if not isinstance(metrics, dict) or not isinstance(info, dict):
        return metrics
    return {**info, **metrics}
