"""Faults injected from outside the process tree, as a user's environment does it, into a fresh copy of the project.

Each test copies the project's tracked files into a temporary git repository with a tiny
params.yaml (lambda_resnet26 at 32 px, 2 classes x 16 images, 2 epochs of 8 steps over 2
CPU processes), runs ``dvc repro prepare`` once, and then, per test, ``dvc repro train``
(or the stage command) in a copy of it. Judged by what the user sees: the exit code, the
last line, no traceback on the terminal, no process left, nothing lost.

* SIGKILL of the ``dvc repro`` process group: torchrun and both workers die with it, and
  ``checkpoints/last.pt`` is not written afterwards;
* SIGTERM to the ``dvc`` pid alone, or to its whole process group: the stage stops at the
  current step with a checkpoint, ends with one line and exit 75, and the next ``dvc repro``
  resumes to the same weights as an uninterrupted run;
* an empty, truncated, random-bytes, code-running or foreign-format checkpoint at resume:
  one line naming the file and what it is, no torchrun launched;
* a full disk while checkpointing (a small tmpfs): one line naming the space needed, the
  log file named, no torchrun restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from lambda_repro.models import read_checkpoint

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXIT_PREEMPTED = 75
STAGE_TIMEOUT_S = 300  # one healthy training takes 20-80 s here, depending on the load
# A job signalled from outside sleeps this long before each step, so that epoch 2 outlasts the signal's way
# down on any host (an epoch of 8 steps takes 2 s on a fast one).
SLOW_STEP_ENV = {"LAMBDA_REPRO_FAULT_STEP_DELAY_S": "0.75"}
WORKER_LOG = "logs/train_workers.log"
CHECKPOINT = "checkpoints/last.pt"
TRACEBACK = "Traceback (most recent call last)"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "faults",
    "GIT_AUTHOR_EMAIL": "faults@example.invalid",
    "GIT_COMMITTER_NAME": "faults",
    "GIT_COMMITTER_EMAIL": "faults@example.invalid",
}


def clean_env(project: Path) -> dict[str, str]:
    """The user's environment, less the test hooks, with the copy's code first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_REPRO_FAULT_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **GIT_IDENTITY, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(project)}


def tiny_params() -> dict:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["data"]["synthetic"] = {
        "classes": 2,
        "train_per_class": 16,
        "val_per_class": 2,
        "min_size": 32,
        "max_size": 40,
    }
    params["model"]["name"] = "lambda_resnet26"
    params["train"].update(epochs=2, image_size=32, global_batch=4, workers=0, checkpoint=CHECKPOINT)
    params["distributed"].update(nproc_per_node=2, nnodes=1, max_restarts=2)
    params["tracking"].update(uri="sqlite:///mlflow.db", system_metrics=False)
    return params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A fresh copy of the project (its tracked files, committed) with the tiny dataset prepared by dvc."""
    project = tmp_path_factory.mktemp("faults_processes") / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, project / name)
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    env = clean_env(project)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "fresh copy"]):
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    done = dvc(project, "repro", "prepare")
    assert done.returncode == 0, done.stdout + done.stderr
    return project


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=clean_env(project),
        capture_output=True,
        text=True,
        timeout=600,
    )


def copy_project(prepared: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(prepared, project, symlinks=True)
    return project


class Terminal:
    """``dvc repro train`` started as a shell starts a job: its own process group, output to files."""

    def __init__(self, project: Path, *command: str, env: dict[str, str] | None = None) -> None:
        self.project = project
        self.out, self.err = project / "terminal.out", project / "terminal.err"
        command = command or (sys.executable, "-m", "dvc", "repro", "train")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                command,
                cwd=project,
                env={**clean_env(project), **(SLOW_STEP_ENV if env is None else env)},
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        return []

    def trainers(self) -> list[psutil.Process]:
        """torchrun and the workers below the job."""
        found = []
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(proc.cmdline())
                if "torch.distributed.run" in cmdline or "lambda_repro.training.worker" in cmdline:
                    found.append(proc)
        return found

    def wait_for(self, condition, what: str, timeout: float = STAGE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the job ended (exit {self.process.returncode}) before {what}\n{self.text()}")
            if condition():
                return
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"timed out waiting for {what}\n{self.text()}")

    def wait_for_training(self, epochs_done: int) -> list[psutil.Process]:
        """Until the checkpoint holds ``epochs_done`` epochs and both workers and torchrun run; returns them."""
        path = self.project / CHECKPOINT

        def ready() -> bool:
            with contextlib.suppress(Exception):
                return read_checkpoint(path)["epoch"] >= epochs_done and len(self.trainers()) == 3
            return False

        self.wait_for(ready, f"{epochs_done} epoch(s) checkpointed with torchrun and 2 workers running")
        return self.trainers()

    def kill(self) -> None:
        for proc in reversed(self.tree()):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def text(self) -> str:
        return f"--- stdout\n{self.out.read_text()[-3000:]}\n--- stderr\n{self.err.read_text()[-5000:]}"

    def last_line(self) -> str:
        lines = [line for line in self.err.read_text().replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1] if lines else ""


def file_state(path: Path) -> tuple[int, int, str]:
    data = path.read_bytes()
    return path.stat().st_mtime_ns, len(data), hashlib.sha256(data).hexdigest()


def all_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after ``timeout`` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted ``dvc repro train``."""
    project = copy_project(prepared, tmp_path_factory.mktemp("reference"))
    done = dvc(project, "repro", "train")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project / WORKER_LOG).is_file()
    return read_checkpoint(project / CHECKPOINT)["state_dict"]


def assert_resumes_to(project: Path, reference: dict[str, torch.Tensor], interrupted: dict) -> None:
    assert not interrupted["finished"] and (interrupted["epoch"], interrupted["step_in_epoch"]) > (0, 0)
    done = dvc(project, "repro", "train")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from {CHECKPOINT}: epoch {interrupted['epoch'] + 1}, step {interrupted['step_in_epoch']}" in (
        done.stdout
    )
    final = read_checkpoint(project / CHECKPOINT)
    assert final["finished"] and final["epoch"] == 2
    different = [k for k, t in reference.items() if not torch.equal(t, final["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"


def test_sigkill_of_the_dvc_process_group_leaves_no_trainer_and_no_later_write(prepared, tmp_path):
    project = copy_project(prepared, tmp_path)
    job = Terminal(project)
    trainers = job.wait_for_training(epochs_done=0)
    everything = job.tree()
    before = file_state(project / CHECKPOINT)
    os.killpg(job.process.pid, signal.SIGKILL)  # power loss / the OOM killer of the job
    job.process.wait(timeout=30)
    alive = all_gone(everything, timeout=15)
    assert not alive, f"still running after the kill: {[(p.pid, p.name()) for p in alive]}"
    assert {p.pid for p in trainers} and not any(psutil.pid_exists(p.pid) for p in trainers)
    time.sleep(3)  # a surviving worker would checkpoint within a step or two
    assert file_state(project / CHECKPOINT) == before, "last.pt was written after the kill"
    leftovers = [p.name for p in (project / "checkpoints").iterdir() if p.name != "last.pt"]
    assert not leftovers or all(name.endswith(".tmp") for name in leftovers)


# dvc runs the stage through $SHELL -c (/bin/sh where SHELL is unset): dash forks a child for the command, so
# the launcher's parent is a shell that outlives dvc; bash execs it, so the parent is dvc itself.
@pytest.mark.parametrize("shell", [s for s in ("/bin/sh", "/bin/bash") if Path(s).exists()])
def test_sigterm_to_the_dvc_pid_alone_stops_cleanly_and_the_rerun_resumes_identically(
    prepared, tmp_path, reference, shell
):
    project = copy_project(prepared, tmp_path)
    job = Terminal(project, env={**SLOW_STEP_ENV, "SHELL": shell})
    job.wait_for_training(epochs_done=1)
    stage_tree = [p for p in job.tree() if p.pid != job.process.pid]
    os.kill(job.process.pid, signal.SIGTERM)  # a container runtime stopping its main process
    job.process.wait(timeout=60)
    alive = all_gone(stage_tree, timeout=STAGE_TIMEOUT_S)
    assert not alive, f"still running: {[(p.pid, p.name()) for p in alive]}\n{job.text()}"
    terminal = job.err.read_text()
    assert job.last_line().startswith("train: error: stopped by SIGTERM at epoch 2, step "), job.text()
    assert job.last_line().endswith("run again to resume"), job.text()
    assert TRACEBACK not in terminal and "SignalException" not in terminal, job.text()
    assert_resumes_to(project, reference, read_checkpoint(project / CHECKPOINT))


def test_sigterm_to_the_dvc_process_group_stops_once_without_a_traceback(prepared, tmp_path, reference):
    project = copy_project(prepared, tmp_path)
    job = Terminal(project)
    job.wait_for_training(epochs_done=1)
    everything = job.tree()
    os.killpg(job.process.pid, signal.SIGTERM)  # `docker stop`, or a scheduler signalling the job
    job.process.wait(timeout=STAGE_TIMEOUT_S)
    alive = all_gone(everything, timeout=STAGE_TIMEOUT_S)
    assert not alive, f"still running: {[(p.pid, p.name()) for p in alive]}\n{job.text()}"
    terminal = job.err.read_text()
    assert TRACEBACK not in terminal and "SignalException" not in terminal, job.text()
    stop_lines = [line for line in terminal.splitlines() if line.startswith("train: error: stopped by SIGTERM")]
    assert len(stop_lines) == 1 and job.last_line() == stop_lines[0], job.text()
    saved = read_checkpoint(project / CHECKPOINT)
    # Stopped in epoch 2, at the step the signal found (step 0 when it landed before the epoch's first step).
    assert saved["epoch"] == 1 and 0 <= saved["step_in_epoch"] < 8 and not saved["finished"]
    assert stop_lines[0].startswith(f"train: error: stopped by SIGTERM at epoch 2, step {saved['step_in_epoch']}")


# -- checkpoints that cannot be resumed ---------------------------------------------------


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _zip_checkpoint() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "epoch": 1}, buffer)
    return buffer.getvalue()


BAD_CHECKPOINTS = {
    "empty": (lambda marker: b"", "is empty (0 bytes)"),
    "truncated": (lambda marker: _zip_checkpoint()[:5000], "is truncated: a zip archive (5000 bytes) missing its end"),
    "random": (lambda marker: bytes(range(7, 256)) * 40, "is not a checkpoint at all"),
    "malicious": (
        lambda marker: pickle.dumps({"state_dict": _RunsCode(marker)}, protocol=2),
        "refused to load checkpoints/last.pt: it holds objects that would run code when loaded (posix.mkdir)",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_unusable_checkpoint_at_resume_is_one_line_naming_it_and_never_retried(prepared, tmp_path, kind):
    project = copy_project(prepared, tmp_path)
    marker = tmp_path / "code-ran"
    make, what = BAD_CHECKPOINTS[kind]
    (project / "checkpoints").mkdir()
    (project / CHECKPOINT).write_bytes(make(str(marker)))
    before = file_state(project / CHECKPOINT)
    job = Terminal(project)
    job.process.wait(timeout=STAGE_TIMEOUT_S)
    assert job.process.returncode != 0, job.text()
    last = job.last_line()
    # dvc adds its own line after the stage's; the stage's is the one before it.
    stage_lines = [line for line in job.err.read_text().splitlines() if line.startswith("train: error:")]
    assert len(stage_lines) == 1, job.text()
    assert f"train: error: cannot resume from train.checkpoint: {CHECKPOINT}" in stage_lines[0] or (
        kind == "malicious" and "train: error: cannot resume from train.checkpoint: refused" in stage_lines[0]
    ), job.text()
    assert what in stage_lines[0], job.text()
    assert "delete it to start training over" in stage_lines[0].lower(), job.text()
    assert "failed to reproduce 'train'" in last, job.text()
    assert TRACEBACK not in job.err.read_text(), job.text()
    assert "torch.distributed.run" not in job.out.read_text() + job.err.read_text()
    assert not (project / WORKER_LOG).exists(), "torchrun was started for a checkpoint that cannot be resumed"
    assert file_state(project / CHECKPOINT) == before and not marker.exists()


def test_full_disk_while_checkpointing_is_one_line_with_the_space_needed_and_no_restart(prepared, tmp_path):
    project = copy_project(prepared, tmp_path)
    checkpoints = project / "checkpoints"
    checkpoints.mkdir()
    # Room for one checkpoint (~62 MiB) but not for the temporary file of the next one beside it.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=90m", "tmpfs", str(checkpoints)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        job = Terminal(project, sys.executable, "pipelines/train.py")
        job.process.wait(timeout=STAGE_TIMEOUT_S)
        assert job.process.returncode == 1, job.text()
        last = job.last_line()
        assert last.startswith(f"train: error: No space left on device for checkpoint {CHECKPOINT}: it needs about "), (
            job.text()
        )
        assert "MiB free in checkpoints; the previous checkpoint is kept" in last, job.text()
        assert f"not retried (a restart would fail the same way); tracebacks in {WORKER_LOG}" in last, job.text()
        assert TRACEBACK not in job.err.read_text(), job.text()
        log = (project / WORKER_LOG).read_text()
        assert TRACEBACK in log and "CheckpointSpaceError" in log
        # One attempt: torchrun never saw a worker fail, so it restarted nothing.
        assert "will restart worker group" not in log and "failed (exitcode" not in log, log[-3000:]
        assert read_checkpoint(project / CHECKPOINT)["epoch"] == 0  # the checkpoint of the start, intact
        assert [p.name for p in checkpoints.iterdir()] == ["last.pt"]
    finally:
        subprocess.run(["umount", "-l", str(checkpoints)], check=False)


def test_an_image_broken_after_prepare_is_one_line_naming_it_and_never_retried(prepared, tmp_path):
    project = copy_project(prepared, tmp_path)
    # Overwrite one training image with garbage of the same size: the listing still matches the manifest.
    image = sorted((project / "data" / "prepared" / "train").rglob("*.JPEG"))[3]
    image.write_bytes(b"\0" * image.stat().st_size)
    job = Terminal(project, sys.executable, "pipelines/train.py")  # dvc would rerun prepare and restore the file
    job.process.wait(timeout=STAGE_TIMEOUT_S)
    assert job.process.returncode == 1, job.text()
    last = job.last_line()
    assert last.startswith("train: error: ") and image.name in last, job.text()
    assert f"not retried (a restart would fail the same way); tracebacks in {WORKER_LOG}" in last, job.text()
    assert TRACEBACK not in job.err.read_text(), job.text()
    log = (project / WORKER_LOG).read_text()
    assert TRACEBACK in log and "DataError" in log
    assert "will restart worker group" not in log and "failed (exitcode" not in log, log[-3000:]
