"""RunTracker against a real SQLite MLflow store: what is logged is what MLflow holds."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lambda_repro.cli import main as cli_main
from lambda_repro.tracking import (
    RunTracker,
    TrackingRejectedWarning,
    flatten_params,
    git_tags,
    replay_buffer,
    resolve_tracking_uri,
)
from lambda_repro.tracking.buffer import sessions
from lambda_repro.tracking.uri import artifact_location


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised MLflow SQLite database (creating the tables takes seconds: done once, then copied)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(empty_store, tmp_path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    return f"sqlite:///{db}"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracker(uri: str, tmp_path: Path, **kwargs) -> RunTracker:
    kwargs.setdefault("system_metrics", False)
    return RunTracker(uri, "test-exp", buffer_dir=tmp_path / "buffer", **kwargs)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_params_metrics_tags_artifacts_and_events_reach_mlflow(store, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    with tracker(store, tmp_path, run_name="r1", tags={"owner": "tests"}) as t:
        t.log_params({"train": {"base_lr": 0.1, "precision": "fp32"}, "seed": 0, "sizes": [1, 8]})
        for step, loss in enumerate([2.0, 1.5, 1.25]):
            t.log_metrics({"train_loss": loss, "lr": 0.1 / (step + 1)}, step=step)
        t.set_tags({"stage": "train"})
        t.log_artifact(artifact, artifact_path="docs")
        t.log_event("non_finite_loss", "loss is nan at step 7", step=7)
        run_id = t.run_id
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "r1"
    assert run.data.params == {"train.base_lr": "0.1", "train.precision": "fp32", "seed": "0", "sizes": "[1, 8]"}
    assert history(client, run_id, "train_loss") == [(0, 2.0), (1, 1.5), (2, 1.25)]
    assert history(client, run_id, "lr") == [(0, 0.1), (1, 0.05), (2, pytest.approx(0.1 / 3))]
    assert run.data.tags["owner"] == "tests" and run.data.tags["stage"] == "train"
    assert run.data.tags["event.non_finite_loss"] == "loss is nan at step 7"
    assert run.data.tags["event.non_finite_loss.step"] == "7"
    assert Path(client.download_artifacts(run_id, "docs/notes.txt", str(tmp_path / "dl"))).read_text() == "hello"
    event = Path(client.download_artifacts(run_id, "events/non_finite_loss_step7.txt", str(tmp_path / "dl")))
    assert "loss is nan at step 7" in event.read_text()
    # The experiment's artifacts live beside the database, not in the working directory.
    experiment = client.get_experiment_by_name("test-exp")
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "test-exp").as_uri()
    assert t.pending_records == 0


def test_resume_by_run_id_continues_the_same_run(store, tmp_path):
    first = tracker(store, tmp_path)
    run_id = first.start()
    first.log_metrics({"loss": 3.0}, step=0)
    first.end("KILLED")
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "KILLED"
    second = tracker(store, tmp_path, run_id=run_id)
    assert second.start() == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    second.log_metrics({"loss": 2.0}, step=1)
    second.end()
    assert history(client, run_id, "loss") == [(0, 3.0), (1, 2.0)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])) == 1


def test_exception_inside_the_context_ends_the_run_failed(store, tmp_path):
    with pytest.raises(ZeroDivisionError), tracker(store, tmp_path) as t:
        t.log_metrics({"x": 1.0}, step=0)
        _ = 1 / 0
    assert MlflowClient(store).get_run(t.run_id).info.status == "FAILED"


def test_keyboard_interrupt_ends_the_run_killed(store, tmp_path):
    with pytest.raises(KeyboardInterrupt), tracker(store, tmp_path) as t:
        raise KeyboardInterrupt
    assert MlflowClient(store).get_run(t.run_id).info.status == "KILLED"


def test_system_metrics_record_cpu_and_say_why_there_is_no_gpu(store, tmp_path):
    with tracker(store, tmp_path, system_metrics=True, system_metrics_interval_s=0.5) as t:
        time.sleep(1.6)
    run = MlflowClient(store).get_run(t.run_id)
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics
    gpu = run.data.tags["system_metrics.gpu"]
    assert gpu.startswith("available (") or gpu.startswith("unavailable: ")


def test_changed_param_on_resume_is_refused_but_the_rest_is_logged(store, tmp_path):
    with tracker(store, tmp_path) as t:
        t.log_params({"lr": 0.1})
    with tracker(store, tmp_path, run_id=t.run_id) as resumed:
        with pytest.warns(TrackingRejectedWarning, match="MLflow refused params record"):
            resumed.log_params({"lr": 0.2})
        resumed.log_metrics({"loss": 1.0}, step=5)
    client = MlflowClient(store)
    assert client.get_run(t.run_id).data.params == {"lr": "0.1"}
    assert history(client, t.run_id, "loss") == [(5, 1.0)]


def test_long_param_is_cut_to_mlflows_limit_with_a_warning(store, tmp_path):
    with tracker(store, tmp_path) as t, pytest.warns(RuntimeWarning, match="param blob: value of 7000 chars"):
        t.log_params({"blob": "x" * 7000})
    value = MlflowClient(store).get_run(t.run_id).data.params["blob"]
    assert len(value) == 6000 and value.endswith("...[truncated]")


def test_misuse_is_a_clear_error(store, tmp_path):
    t = tracker(store, tmp_path)
    with pytest.raises(RuntimeError, match="call start"):
        t.log_metrics({"x": 1.0})
    t.start()
    with pytest.raises(TypeError, match="metric 'x': must be a number, got 'abc'"):
        t.log_metrics({"x": "abc"})
    with pytest.raises(FileNotFoundError, match="artifact not found"):
        t.log_artifact(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="status must be one of"):
        t.end("DONE")
    t.end()
    with pytest.raises(RuntimeError, match="has ended"):
        t.log_metrics({"x": 1.0})


def test_delivered_records_are_marked_so_replay_sends_nothing(store, tmp_path):
    with tracker(store, tmp_path) as t:
        t.log_metrics({"loss": 1.0}, step=0)
    (buffer,) = sessions(tmp_path / "buffer")
    assert [r["op"] for r in buffer.records()] == ["start", "metrics", "end"]
    assert buffer.pending() == []
    summary = replay_buffer(tmp_path / "buffer", store)
    assert summary.delivered == 0
    assert history(MlflowClient(store), t.run_id, "loss") == [(0, 1.0)]


def test_replay_into_a_fresh_store_with_all(store, empty_store, tmp_path):
    with tracker(store, tmp_path) as t:
        t.log_params({"a": {"b": 1}})
        t.log_metrics({"loss": 1.0}, step=0)
    fresh = tmp_path / "fresh.db"
    shutil.copy(empty_store, fresh)
    summary = replay_buffer(tmp_path / "buffer", f"sqlite:///{fresh}", include_delivered=True)
    client = MlflowClient(f"sqlite:///{fresh}")
    (run,) = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])
    assert summary.runs and list(summary.runs.values()) == [run.info.run_id]
    assert run.data.params == {"a.b": "1"} and run.info.status == "FINISHED"
    assert history(client, run.info.run_id, "loss") == [(0, 1.0)]


def test_flatten_params():
    nested = {"model": {"name": "m", "opts": {"k": 3}}, "empty": {}, "none": None, "flag": True}
    assert flatten_params(nested) == {
        "model.name": "m",
        "model.opts.k": "3",
        "empty": "{}",
        "none": "None",
        "flag": "True",
    }


def test_tracking_uri_env_overrides_the_param(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri("sqlite:///mlflow.db") == "http://127.0.0.1:5000"


def test_artifact_location_is_beside_the_database(tmp_path):
    assert artifact_location(f"sqlite:///{tmp_path}/m.db", "e") == (tmp_path / "mlartifacts" / "e").as_uri()
    assert artifact_location("http://127.0.0.1:5000", "e") is None


def test_git_tags(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_tags(tmp_path)["mlflow.source.git.commit"] == "unknown"
    assert "git.error" in git_tags(tmp_path)
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_tags(tmp_path) == {"mlflow.source.git.commit": head, "git.dirty": "false"}
    (tmp_path / "untracked.txt").write_text("outputs do not count")
    assert git_tags(tmp_path)["git.dirty"] == "false"
    (tmp_path / "a.txt").write_text("2")
    assert git_tags(tmp_path)["git.dirty"] == "true"


def test_replay_cli(store, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = tracker(f"http://127.0.0.1:{closed_port()}", tmp_path)
        t.start()
        t.log_metrics({"loss": 0.5}, step=3)
        t.end()
    assert cli_main(["mlflow-replay", str(tmp_path / "buffer"), "--tracking-uri", store]) == 0
    assert "delivered 3 record(s) in 1 run(s)" in capsys.readouterr().out
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])
    assert history(client, run.info.run_id, "loss") == [(3, 0.5)]
