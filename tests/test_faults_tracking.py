"""Faults: the MLflow server unreachable at start or dying mid-run. Training goes on, one warning, nothing lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lambda_repro.tracking import RunTracker, TrackingUnavailableWarning, replay_buffer
from lambda_repro.tracking.buffer import sessions

pytestmark = pytest.mark.faults

MLFLOW = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can kill.

    Artifacts are not proxied (``--no-serve-artifacts``): clients write them to a local
    directory, so the server's SQLite store stays usable directly once the server is dead.
    """

    def __init__(self, directory: Path, empty_store: Path) -> None:
        self.directory = directory
        self.db = directory / "server.db"
        shutil.copy(empty_store, self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.store_uri = f"sqlite:///{self.db}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.store_uri, "--no-serve-artifacts",
            "--default-artifact-root", (self.directory / "server-artifacts").as_uri(),
        ]  # fmt: skip
        log_path = self.directory / "server.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120  # ~5 s on an idle machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not answer /health within 120 s")

    def kill(self) -> None:
        # The server runs in its own process group (the CLI + uvicorn): end that group only.
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None


class CuttableProxy:
    """A TCP relay in front of the server whose link can be cut (connections refused) and restored."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._connections += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def server_once(tmp_path_factory, empty_store):
    # Starting a server costs ~5 s idle (much more on a loaded machine): one per module,
    # restarted only after a test killed it.
    server = MlflowServer(tmp_path_factory.mktemp("server"), empty_store)
    yield server
    server.kill()


@pytest.fixture
def server(server_once):
    if server_once.process is None:
        server_once.start()
    return server_once


def unavailable_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, TrackingUnavailableWarning)]


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_unreachable_at_start_buffers_everything_and_replay_loads_it_exactly(tmp_path, empty_store):
    uri = f"http://127.0.0.1:{free_port()}"
    buffer_dir = tmp_path / "buffer"
    artifact = tmp_path / "history.csv"
    artifact.write_text("epoch,loss\n0,2.0\n")
    began = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = RunTracker(uri, "faults", run_name="offline", tags={"k": "v"}, buffer_dir=buffer_dir)
        run_id = tracker.start()
        tracker.log_params({"train": {"base_lr": 0.1}})
        for step in range(5):
            tracker.log_metrics({"loss": 2.0 - 0.25 * step, "top1": 10.0 * step}, step=step)
        tracker.log_artifact(artifact)
        tracker.log_event("non_finite_loss", "loss is inf at step 4", step=4)
        tracker.end()
    elapsed = time.monotonic() - began
    assert len(run_id) == 32
    assert len(unavailable_warnings(caught)) == 1, unavailable_warnings(caught)
    assert "mlflow-replay" in unavailable_warnings(caught)[0]
    assert elapsed < 30, f"an unreachable server cost {elapsed:.0f} s"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored at end()
    (buffer,) = sessions(buffer_dir)
    ops = [r["op"] for r in buffer.pending()]
    assert ops == ["start", "params"] + ["metrics"] * 5 + ["artifact", "event", "end"]
    logged = sorted((r["step"], r["metrics"]["loss"], r["timestamp"]) for r in buffer.records() if r["op"] == "metrics")

    # The file changes after logging: the replay must load it as it was when logged.
    artifact.write_text("overwritten")
    db = tmp_path / "later.db"
    shutil.copy(empty_store, db)
    store = f"sqlite:///{db}"
    summary = replay_buffer(buffer_dir, store)
    assert summary.delivered == 10 and summary.rejected == 0 and not summary.missing_artifacts
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("faults").experiment_id])
    replayed = run.info.run_id
    assert metric_history(client, replayed, "loss") == logged
    assert [v for _, v, _ in metric_history(client, replayed, "top1")] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert run.data.params == {"train.base_lr": "0.1"}
    assert run.data.tags["k"] == "v" and run.data.tags["lambda_repro.local_run_id"] == run_id
    assert run.data.tags["event.non_finite_loss"] == "loss is inf at step 4"
    assert run.info.status == "FINISHED" and run.info.run_name == "offline"
    downloaded = Path(client.download_artifacts(replayed, "history.csv", str(tmp_path / "dl")))
    assert downloaded.read_text() == "epoch,loss\n0,2.0\n"

    # Replaying again sends nothing; resuming the local id finds the replayed run.
    assert replay_buffer(buffer_dir, store).delivered == 0
    resumed = RunTracker(store, "faults", buffer_dir=buffer_dir, run_id=run_id, system_metrics=False)
    assert resumed.start() == replayed
    resumed.log_metrics({"loss": 0.1}, step=5)
    resumed.end()
    assert len(metric_history(client, replayed, "loss")) == 6


def test_buffer_cut_short_by_a_kill_still_replays(tmp_path, empty_store):
    buffer_dir = tmp_path / "buffer"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker = RunTracker(f"http://127.0.0.1:{free_port()}", "faults", buffer_dir=buffer_dir, system_metrics=False)
        tracker.start()
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.log_metrics({"loss": 0.5}, step=1)
    # A process killed mid-write leaves half a line; no end record either.
    (buffer,) = sessions(buffer_dir)
    with open(buffer.records_path, "a") as f:
        f.write('{"op": "metrics", "metr')
    db = tmp_path / "later.db"
    shutil.copy(empty_store, db)
    with pytest.warns(RuntimeWarning, match="skipped unreadable last line"):
        summary = replay_buffer(buffer_dir, f"sqlite:///{db}")
    assert summary.delivered == 3
    client = MlflowClient(f"sqlite:///{db}")
    (run_id,) = summary.runs.values()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 1.0), (1, 0.5)]


@pytest.mark.slow
def test_link_back_mid_run_delivers_the_backlog_without_replay(server, tmp_path):
    proxy = CuttableProxy(server.port)
    proxy.restore()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = RunTracker(
            proxy.uri, "faults", buffer_dir=tmp_path / "buffer", system_metrics=False, retry_interval_s=0
        )
        run_id = tracker.start()
        tracker.log_metrics({"loss": 1.0}, step=0)
        proxy.cut()
        tracker.log_metrics({"loss": 0.9}, step=1)
        tracker.log_metrics({"loss": 0.8}, step=2)
        assert tracker.pending_records == 2
        proxy.restore()
        tracker.log_metrics({"loss": 0.7}, step=3)
        assert tracker.pending_records == 0
        tracker.end()
    proxy.cut()
    assert len(unavailable_warnings(caught)) == 1
    client = MlflowClient(server.uri)
    losses = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert losses == [(0, 1.0), (1, 0.9), (2, 0.8), (3, 0.7)]
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_server_dying_mid_run_loses_nothing_after_replay(server, tmp_path):
    buffer_dir = tmp_path / "buffer"
    artifact = tmp_path / "model_card.txt"
    artifact.write_text("card")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = RunTracker(
            server.uri, "faults", buffer_dir=buffer_dir, system_metrics=True, system_metrics_interval_s=1
        )
        run_id = tracker.start()
        tracker.log_params({"seed": 0})
        for step in range(3):
            tracker.log_metrics({"loss": 3.0 - step}, step=step)
        assert tracker.pending_records == 0
        server.kill()
        began = time.monotonic()
        for step in range(3, 6):
            tracker.log_metrics({"loss": 3.0 - step}, step=step)
        tracker.log_artifact(artifact)
        tracker.log_event("preempted", "SIGTERM at step 5", step=5)
        tracker.end("KILLED")
        offline_cost = time.monotonic() - began
    assert len(unavailable_warnings(caught)) == 1, unavailable_warnings(caught)
    assert offline_cost < 30, f"logging against a dead server cost {offline_cost:.0f} s"
    assert tracker.pending_records == 6  # 3 metrics, artifact, event, end
    artifact.unlink()  # gone before the replay: the buffer kept a copy

    # Load into the dead server's own store (what a restarted server would serve).
    summary = replay_buffer(buffer_dir, server.store_uri)
    assert summary.delivered == 6 and summary.runs == {sessions(buffer_dir)[0].session: run_id}
    client = MlflowClient(server.store_uri)
    losses = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert losses == [(step, 3.0 - step) for step in range(6)]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params == {"seed": "0"}
    assert run.data.tags["event.preempted"] == "SIGTERM at step 5"
    downloaded = Path(client.download_artifacts(run_id, "model_card.txt", str(tmp_path / "dl")))
    assert downloaded.read_text() == "card"
    assert replay_buffer(buffer_dir, server.store_uri).delivered == 0
