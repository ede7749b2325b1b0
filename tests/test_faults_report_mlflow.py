"""Faults: the report stage with an MLflow server that is dead or drops every connection.

MLflow's defaults (7 retries with exponential backoff) made the report stage spend ~250 s
on a dead server; every MLflow call of the stage now gives up at once, without retrying,
so the report renders from the metrics files with one note saying why MLflow is missing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_report import params_for, write_fake_metrics

pytestmark = pytest.mark.faults

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REPORT_STAGE = PROJECT_ROOT / "pipelines" / "report.py"
RUN_ID = "0" * 32


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DroppingServer:
    """Accepts every connection on 127.0.0.1 and closes it unanswered, counting them (one per HTTP attempt)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                self.connections += 1
                connection.close()

    def close(self) -> None:
        self.socket.close()


def run_report(project: Path, uri: str) -> subprocess.CompletedProcess:
    write_fake_metrics(project / "metrics")
    params_for(project)
    pointer = {"tracking_uri": uri, "experiment": "lambda-repro", "run_id": RUN_ID}
    (project / "metrics" / "mlflow_run.json").write_text(json.dumps(pointer))
    env = {"MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)}
    # The subprocess timeout only guards against a hang; the figure is in the README, not asserted.
    return subprocess.run(
        [sys.executable, str(REPORT_STAGE)], cwd=project, env=env, capture_output=True, text=True, timeout=240
    )


def assert_rendered_without_mlflow(done: subprocess.CompletedProcess, project: Path) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("report: MLflow:")]
    assert len(notes) == 1 and "MLflow store unavailable" in notes[0], done.stdout
    assert notes[0].endswith("the report is built from the metrics files alone"), notes[0]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    markdown = (project / "reports" / "report.md").read_text()
    assert "78.208" in markdown
    # The seed-variance lookup is skipped, not retried, and the headline says what it rests on.
    assert "rests on 1 run: no interval (other runs of this recipe not looked up: MLflow unavailable)" in markdown
    assert "Seed variance" not in markdown


def test_report_with_a_dead_mlflow_port_renders_from_the_files(tmp_path):
    done = run_report(tmp_path, f"http://127.0.0.1:{dead_port()}")
    assert_rendered_without_mlflow(done, tmp_path)
    assert "Connection refused" in done.stdout


def test_report_never_retries_a_server_that_drops_connections(tmp_path):
    server = DroppingServer()
    try:
        done = run_report(tmp_path, f"http://127.0.0.1:{server.port}")
    finally:
        server.close()
    assert_rendered_without_mlflow(done, tmp_path)
    # One connection per MLflow call: the search, the history and the logging of the report (MLflow's default
    # would be 1 + 7 retries each). The tracker tries again only after its retry interval, never within a stage.
    assert 1 <= server.connections <= 4, f"{server.connections} connections: MLflow retried"
