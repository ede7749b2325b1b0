"""The report's inputs: the pipeline's metrics files, read leniently (a missing file is noted, not fatal)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lambda_repro.metrics_files import read_metrics
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME

TRAIN = "train.json"
HISTORY = "train_history.csv"
EVAL = "eval.json"
PROFILE = "profile.json"
GPU_TIMELINE = "profile_gpu_timeline.csv"
MLFLOW_RUN = RUN_POINTER_NAME


@dataclass
class ReportInputs:
    train: dict | None = None
    history: pd.DataFrame | None = None
    eval: dict | None = None
    profile: dict | None = None
    gpu_timeline: pd.DataFrame | None = None
    missing: list[str] = field(default_factory=list)


def load_inputs(metrics_dir: str | os.PathLike) -> ReportInputs:
    """Read ``metrics/{train,eval,profile}.json`` (each with its ``_info.json``), the history and the GPU timeline."""
    metrics_dir = Path(metrics_dir)
    inputs = ReportInputs()
    inputs.train = _read_json(metrics_dir / TRAIN, inputs.missing)
    inputs.eval = _read_json(metrics_dir / EVAL, inputs.missing)
    inputs.profile = _read_json(metrics_dir / PROFILE, inputs.missing)
    inputs.history = _read_csv(metrics_dir / HISTORY, inputs.missing)
    timeline = _read_csv(metrics_dir / GPU_TIMELINE, [])  # absent or empty without a GPU: not a problem
    inputs.gpu_timeline = timeline if timeline is not None and not timeline.empty else None
    return inputs


def _read_json(path: Path, missing: list[str]) -> dict | None:
    try:
        data = read_metrics(path)  # with its _info.json beside it
    except FileNotFoundError:
        missing.append(f"{path.as_posix()} (missing)")
        return None
    except (OSError, ValueError) as err:
        missing.append(f"{path.as_posix()} (unreadable: {err})")
        return None
    if not isinstance(data, dict):
        missing.append(f"{path.as_posix()} (not a JSON object)")
        return None
    return data


def _read_csv(path: Path, missing: list[str]) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        missing.append(f"{path.as_posix()} (missing)")
    except (OSError, ValueError) as err:  # pandas' EmptyDataError and ParserError are ValueErrors
        missing.append(f"{path.as_posix()} (unreadable: {err})")
    return None
