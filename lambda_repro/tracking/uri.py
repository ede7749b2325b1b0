"""Which MLflow store to talk to, and where its artifacts go."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def resolve_tracking_uri(param_uri: str) -> str:
    """``MLFLOW_TRACKING_URI`` from the environment when set, else the ``tracking.uri`` param."""
    return os.environ.get(TRACKING_URI_ENV) or param_uri


def is_http(tracking_uri: str) -> bool:
    return urlparse(tracking_uri).scheme in ("http", "https")


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """An explicit artifact root for a new experiment (MLflow 3 has no usable default for SQLite).

    ``sqlite:///mlflow.db`` -> ``mlartifacts/<experiment>`` beside the database file, as a
    ``file://`` URI. For a server (``http://...``) the server decides: ``None``.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    # sqlite:///relative.db and sqlite:////absolute.db: the path is what follows "sqlite:///".
    db_path = Path(tracking_uri[len("sqlite:///") :]) if tracking_uri.startswith("sqlite:///") else Path("mlflow.db")
    return (db_path.resolve().parent / "mlartifacts" / experiment).as_uri()
