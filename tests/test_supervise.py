"""The launcher's supervision of torchrun, piece by piece, without torchrun (fast; end to end: test_faults_*)."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lambda_repro.data import DataError
from lambda_repro.models import CheckpointError
from lambda_repro.models.checkpoint import CheckpointSpaceError
from lambda_repro.training import outcome
from lambda_repro.training.supervise import _StderrRelay, last_exception_line

# A parent that starts a child with SIGKILL as its parent-death signal, prints the child's pid, then waits.
PARENT = """
import signal, subprocess, sys, time
from lambda_repro.training.supervise import parent_death_preexec
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=parent_death_preexec(signal.SIGKILL), start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_a_child_in_its_own_session_dies_with_its_sigkilled_parent():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running() and os.getpgid(child.pid) != os.getpgid(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        child.wait(timeout=30)  # raises TimeoutExpired if it survived its parent
    finally:
        parent.kill()
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE


def relayed(lines: list[str], tmp_path: Path, capsys) -> tuple[str, str, _StderrRelay]:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write("".join(lines).encode())
    relay = _StderrRelay(io.FileIO(read_end, "rb"), tmp_path / "workers.log", "train")
    relay.run()
    return capsys.readouterr().err, (tmp_path / "workers.log").read_text(), relay


def test_terminal_gets_warnings_and_one_line_per_failed_worker_the_log_gets_everything(tmp_path, capsys):
    lines = [
        "[rank0]: Traceback (most recent call last):\n",
        '[rank0]:   File "worker.py", line 1, in <module>\n',
        "[rank0]: RuntimeError: boom\n",
        "E1201 12:00:00.000 42 torch/distributed/elastic/multiprocessing/api.py:1003] failed (exitcode: -9) "
        "local_rank: 1 (pid: 4242) of binary: python\n",
        "[rank0]:/x/trainer.py:74: UserWarning: train.precision=bf16 applies on GPU only\n",
        "[rank0]:   warnings.warn(\n",
        "warning: the training code changed since checkpoints/last.pt was written; resuming it anyway\n",
        "epoch 1/2:  50%|#####     | 4/8 [00:02<00:02,  1.81it/s]\r",
        "epoch 1/2:  62%|######    | 5/8 [00:02<00:01,  1.90it/s, loss=0.6]Traceback (most recent call last):\n",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n",
    ]
    terminal, log, relay = relayed(lines, tmp_path, capsys)
    assert terminal == (
        "train: warning: worker local_rank 1 failed (exitcode: -9, SIGKILL); torchrun restarts the group while "
        f"distributed.max_restarts allows (details in {tmp_path / 'workers.log'})\n"
        "train: warning: train.precision=bf16 applies on GPU only\n"
        "warning: the training code changed since checkpoints/last.pt was written; resuming it anyway\n"
        "epoch 1/2:  50%|#####     | 4/8 [00:02<00:02,  1.81it/s]\r"
        # A traceback that starts on the line of a progress bar: the bar is shown, the traceback is not.
        "epoch 1/2:  62%|######    | 5/8 [00:02<00:01,  1.90it/s, loss=0.6]\n"
    )
    assert relay.failed_workers == ["local_rank 1 (exitcode: -9, SIGKILL)"]
    # Everything but the progress bar's redraws is in the log, in order.
    assert log == "".join(line for line in lines if not line.endswith("\r"))
    assert last_exception_line(tmp_path / "workers.log") == "RuntimeError: boom"


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (CheckpointError("checkpoints/last.pt is empty (0 bytes)"), True),
        (CheckpointSpaceError(Path("."), 1 << 20), True),
        (OSError(errno.EROFS, "Read-only file system"), True),
        (DataError("train/n01/x.JPEG: cannot identify image file"), True),
        (RuntimeError("Connection closed by peer"), False),  # a dead peer: a restart cures it
        (OSError(errno.ECONNRESET, "Connection reset by peer"), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_permanent_errors_are_those_a_restart_cannot_cure(error, permanent):
    assert outcome.is_permanent(error) is permanent


def test_outcome_is_written_atomically_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / "outcome.json"
    monkeypatch.setenv(outcome.OUTCOME_ENV, str(path))
    outcome.write_outcome(outcome.FAILED, "disk full", permanent=True)
    assert outcome.read_outcome(path) == {"status": "failed", "message": "disk full", "permanent": True}
    assert [p.name for p in tmp_path.iterdir()] == ["outcome.json"]


def test_space_error_names_the_file_the_space_needed_and_what_is_free(tmp_path):
    err = CheckpointSpaceError(tmp_path / "last.pt", 3 * 2**20)
    assert err.errno == errno.ENOSPC
    text = str(err)
    assert text.startswith(f"No space left on device for checkpoint {tmp_path / 'last.pt'}: it needs about 3.0 MiB, ")
    assert f"MiB free in {tmp_path}; the previous checkpoint is kept" in text


# The stage command as dvc runs it where SHELL is unset: through `/bin/sh -c`, which dash does not exec.
# It supervises a child that writes a marker on SIGTERM, then reports how the supervision ended.
LAUNCHER_UNDER_SHELL = """
import json, sys
from pathlib import Path
from lambda_repro.training.supervise import owner_process, supervise
work = Path(sys.argv[1])
(work / "owner").write_text(str(owner_process().pid))
child = (
    "import signal, sys, time, pathlib; "
    "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('stopped'), sys.exit(0))); "
    "print('ready', file=sys.stderr, flush=True); time.sleep(120)"
)
done = supervise([sys.executable, "-c", child, str(work / "marker")], {}, work / "outcome.json", work / "log.txt")
(work / "done").write_text(json.dumps({"returncode": done.returncode, "stop_signal": done.stop_signal}))
"""
# The owner: starts the launcher as dvc does (`/bin/sh -c "python ..."`) and waits for it.
OWNER = """
import shlex, subprocess, sys
subprocess.Popen(["/bin/sh", "-c", shlex.join([sys.executable, "-c", sys.argv[1], sys.argv[2]])]).wait()
"""


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs /bin/sh")
def test_the_launcher_stops_when_its_owner_dies_even_through_a_wrapper_shell(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, LAUNCHER_UNDER_SHELL, str(tmp_path)], env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "owner").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    # The owner is the python above the shell, not the shell (whatever /bin/sh is: dash forks, bash execs).
    assert int((tmp_path / "owner").read_text()) == owner.pid
    while "ready" not in (tmp_path / "log.txt").read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the child's SIGTERM handler is installed before it prints "ready"
    owner.kill()  # dvc SIGTERM'd (or killed): the shell between it and the launcher lives on
    owner.wait(timeout=10)
    while not (tmp_path / "done").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "marker").read_text() == "stopped"
    assert json.loads((tmp_path / "done").read_text()) == {"returncode": 0, "stop_signal": "SIGTERM"}
