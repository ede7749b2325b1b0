"""The launcher's hold on torchrun and its workers: they die with it, stop once on a signal, keep the terminal clean.

* **No orphans.** On Linux the launcher asks for SIGTERM when its own parent dies (``dvc
  repro`` killed or stopped: the clean preemption path follows), torchrun is started with
  SIGKILL as its parent-death signal, and each worker asks for SIGKILL when torchrun dies
  (see :func:`tie_to_launcher`). So a SIGKILL of the launcher, of ``dvc``'s process group or
  of torchrun ends the whole tree at once, and nothing writes the checkpoint afterwards.
* **The owner's death is a stop.** dvc runs a stage's command through ``$SHELL -c``, and dash
  (Debian's ``/bin/sh``, dvc's choice where ``SHELL`` is unset) does not exec it, so the
  launcher's parent may be a shell that outlives a SIGTERM'd ``dvc``. The launcher therefore
  watches its owner, the first ancestor that is not such a wrapper shell, and stops as on
  SIGTERM when it is gone (see :func:`owner_process`).
* **One stop.** SIGTERM / SIGINT reach the launcher (alone, or with its whole process
  group: torchrun and the workers are in sessions of their own) and are forwarded to
  torchrun once; torchrun passes them to the workers, which checkpoint at the current step.
* **Permanent errors are not retried.** A worker that hits an error a restart cannot cure
  (an unreadable checkpoint, a full disk, bad data) records it in the outcome file and
  waits; the launcher sees it and ends torchrun's tree before torchrun can restart it.
* **One line per error.** torchrun's and the workers' stderr (tracebacks, torchrun's log)
  go to a log file; only warnings, and one line per failed worker, reach the terminal.

Parent-death signals are a Linux feature; elsewhere the tree is only as tied as torchrun makes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lambda_repro.training.outcome import read_outcome

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
LAUNCHER_PID_ENV = "LAMBDA_REPRO_LAUNCHER_PID"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.1

# torchrun's line for a worker that died, e.g. "failed (exitcode: -9) local_rank: 1 (pid: 4242) of binary: ...".
_WORKER_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
# What of torchrun's and the workers' stderr reaches the terminal: our own warnings and Python's warnings.
_OWN_WARNING = re.compile(r"^(?:[\w.-]+: )?warning: ")
_PYTHON_WARNING = re.compile(r"^\S+:\d+: (\w*Warning): (.*)$")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d+\]: ?")  # torchrun's prefix on each worker's lines
# tqdm's bar, "epoch 1/2:  38%|###   | 3/8 [00:01<00:02,  1.98it/s, loss=1.37]", up to its closing bracket.
_PROGRESS_BAR_PREFIX = re.compile(r"^[^\n]*?\|\s*\d+/\d+ \[[^\]]*\]")


def _segments(pipe):
    """The pipe's bytes cut after every newline or carriage return (progress bars end with the latter)."""
    pending = b""
    while chunk := os.read(pipe.fileno(), 65536):
        pending += chunk
        while match := re.search(rb"[\r\n]", pending):
            yield pending[: match.end()]
            pending = pending[match.end() :]
    if pending:
        yield pending


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux); False where unsupported."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def parent_death_preexec(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that gives the child ``sig`` as its parent-death signal (resolved before the fork)."""
    prctl = _prctl()
    if prctl is None:
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def tie_to_launcher() -> None:
    """In a worker: die (SIGKILL) with torchrun, and exit at once if torchrun is already gone.

    Called as the worker starts: the parent-death signal is then armed, but torchrun may have
    died before (while the worker imported torch); then the worker's parent is no longer a
    child of the launcher named in ``LAMBDA_REPRO_LAUNCHER_PID``.
    """
    die_with_parent(signal.SIGKILL)
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher:
        return
    import psutil

    try:
        orphaned = psutil.Process(os.getppid()).ppid() != int(launcher)
    except psutil.Error:
        orphaned = True
    if orphaned:
        os._exit(1)


# Shells that dvc (or a user's wrapper script) may run a command through without exec'ing it.
_WRAPPER_SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish"})


def owner_process():
    """The process whose death means "stop": the parent, or above it the first that is not a ``shell -c`` wrapper.

    A ``psutil.Process`` (it remembers its start time, so a recycled pid does not pass for it),
    or None where the parent cannot be read.
    """
    import psutil

    try:
        proc = psutil.Process(os.getppid())
        while proc.name() in _WRAPPER_SHELLS and "-c" in proc.cmdline()[1:]:
            above = proc.parent()
            if above is None or above.pid <= 1:
                break
            proc = above
        return proc
    except psutil.Error:
        return None


def _gone(proc) -> bool:
    import psutil

    try:
        return proc is not None and (not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (children first listed, so none escapes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(tree, timeout=10)


@dataclass
class Supervised:
    """How torchrun ended: its exit code, the workers' outcome, the stop signal forwarded, the workers that failed."""

    returncode: int
    outcome: dict | None
    stop_signal: str | None = None
    failed_workers: list[str] = field(default_factory=list)
    log_path: Path | None = None


class _StderrRelay(threading.Thread):
    """Copies torchrun's stderr into the log file; echoes warnings and one line per failed worker."""

    def __init__(self, pipe, log_path: Path, stage: str) -> None:
        super().__init__(daemon=True)
        self.pipe, self.log_path, self.stage = pipe, log_path, stage
        self.failed_workers: list[str] = []

    def run(self) -> None:
        with open(self.log_path, "ab") as log:
            for segment in _segments(self.pipe):
                text = segment.decode("utf-8", errors="replace")
                if segment.endswith(b"\r"):  # a progress bar redrawing itself: the terminal's, not the log's
                    self._show(text)
                    continue
                log.write(segment)
                log.flush()
                line = text.rstrip("\n")
                bar = _PROGRESS_BAR_PREFIX.match(line)
                if bar:  # a progress bar not yet redrawn, then another write of the process on the same line
                    self._show(bar.group(0) + "\n")
                    line = line[bar.end() :]
                shown = self._terminal_line(line) if line else None
                if shown is not None:
                    self._show(shown + "\n")

    @staticmethod
    def _show(text: str) -> None:
        # The terminal may be gone (dvc killed, the window closed): keep draining the pipe into the log regardless,
        # or torchrun would block on a full pipe.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text)
            sys.stderr.flush()

    def _terminal_line(self, line: str) -> str | None:
        line = _RANK_PREFIX.sub("", line, count=1)
        failed = _WORKER_FAILED.search(line)
        if failed:
            code, rank = int(failed.group(1)), failed.group(2)
            how = f", {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else ""
            self.failed_workers.append(f"local_rank {rank} (exitcode: {code}{how})")
            return (
                f"{self.stage}: warning: worker local_rank {rank} failed (exitcode: {code}{how}); torchrun restarts "
                f"the group while distributed.max_restarts allows (details in {self.log_path})"
            )
        if _OWN_WARNING.match(line):
            return line
        warned = _PYTHON_WARNING.match(line)
        if warned:
            return f"{self.stage}: warning: {warned.group(2)}"
        return None


def supervise(
    command: list[str],
    env: dict[str, str],
    outcome_path: Path,
    log_path: Path,
    stage: str = "train",
    is_permanent_failure: Callable[[dict], bool] = lambda outcome: bool(outcome.get("permanent")),
) -> Supervised:
    """Run torchrun's ``command`` tied to this process; see the module docstring for what that means."""
    die_with_parent(signal.SIGTERM)
    parent, owner = os.getppid(), owner_process()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    env = {**env, LAUNCHER_PID_ENV: str(os.getpid())}
    # A session of its own: the terminal's Ctrl-C or a signal to the whole group reaches torchrun once, from here.
    process = subprocess.Popen(
        command,
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=parent_death_preexec(signal.SIGKILL),
    )
    relay = _StderrRelay(process.stderr, log_path, stage)
    relay.start()
    stop: dict[str, str] = {}

    def forward_once(signum, frame) -> None:
        if not stop:
            stop["signal"] = signal.Signals(signum).name
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    previous = {sig: signal.signal(sig, forward_once) for sig in STOP_SIGNALS}
    try:
        while process.poll() is None:
            outcome = read_outcome(outcome_path)
            if outcome is not None and is_permanent_failure(outcome):
                kill_tree(process.pid)
                break
            if not stop and (os.getppid() != parent or _gone(owner)):
                # dvc is gone: the parent-death signal did not come (not Linux, a race, or a shell between us).
                forward_once(signal.SIGTERM, None)
            time.sleep(POLL_S)
        returncode = process.wait()
    except BaseException:
        kill_tree(process.pid)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    relay.join(timeout=30)
    return Supervised(returncode, read_outcome(outcome_path), stop.get("signal"), relay.failed_workers, log_path)


# A Python exception line ("pkg.mod.SomeError: text"), as the last line of a traceback.
_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]: )?((?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b.*)$")
_LAUNCHER_EXCEPTIONS = ("ChildFailedError", "SignalException")  # torchrun's own summary, not the cause


def last_exception_line(log_path: Path) -> str | None:
    """The last exception a worker raised, from the log (torchrun's own summary exceptions left out)."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line.strip())
        if match and not any(name in match.group(1) for name in _LAUNCHER_EXCEPTIONS):
            return match.group(1)
    return None
