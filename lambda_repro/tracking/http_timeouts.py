"""Short MLflow HTTP requests: no retries and a timeout of seconds, so a dead server costs seconds, not minutes.

MLflow's defaults (7 retries with exponential backoff, 120 s timeout) make one call to an
unreachable server take about four minutes. MLflow reads only the process-wide
environment variables ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``
(no per-client setting), so they are set for the duration of the block, unless the user set
them, and restored after it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from lambda_repro.tracking.uri import is_http

DEFAULT_HTTP_TIMEOUT_S = 5


def lower_http_timeouts(tracking_uri: str, timeout_s: int = DEFAULT_HTTP_TIMEOUT_S) -> list[str]:
    """Set the two variables the user left unset (only toward an HTTP server); returns the names set."""
    if not is_http(tracking_uri):
        return []
    changed = []
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))):
        if name not in os.environ:
            os.environ[name] = value
            changed.append(name)
    return changed


def restore_http_timeouts(names: list[str]) -> None:
    for name in names:
        os.environ.pop(name, None)


@contextlib.contextmanager
def short_http_requests(tracking_uri: str, timeout_s: int = DEFAULT_HTTP_TIMEOUT_S) -> Iterator[None]:
    """MLflow calls inside the block give up on an unreachable HTTP server within ``timeout_s``, without retrying."""
    changed = lower_http_timeouts(tracking_uri, timeout_s)
    try:
        yield
    finally:
        restore_http_timeouts(changed)
