"""How a training run ended, handed from the workers to the launcher through a small JSON file.

Workers exit 0 when they stop on purpose (finished, preempted, diverged), so that torchrun
does not restart the group for something a restart cannot fix; the launcher then reads
this file to exit with the right code. Crashes (non-zero exits) are torchrun's to restart,
except the permanent ones (:func:`is_permanent`): an unreadable checkpoint, a full disk,
bad data or params fail the same way on every restart, so the worker records them here
with ``permanent: true`` and the launcher ends the group instead (see
:mod:`lambda_repro.training.supervise`).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

OUTCOME_ENV = "LAMBDA_REPRO_OUTCOME_FILE"
FINISHED, PREEMPTED, FAILED = "finished", "preempted", "failed"
# The launcher's exit code for each outcome: 75 is EX_TEMPFAIL ("try again"): rerun to resume.
EXIT_CODES = {FINISHED: 0, PREEMPTED: 75, FAILED: 1}
# OSErrors that a restart cannot cure: the disk is full, over quota, read-only, or the file is not ours to write.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def is_permanent(err: BaseException) -> bool:
    """True for an error that would recur on every restart of the group."""
    from lambda_repro.models.checkpoint import CheckpointError

    if isinstance(err, (CheckpointError, ValueError)):  # DataError and bad params are ValueErrors
        return True
    return isinstance(err, OSError) and err.errno in _PERMANENT_ERRNOS


def write_outcome(status: str, message: str, permanent: bool = False) -> None:
    """Record the outcome where the launcher asked for it (no-op when not launched by it).

    Atomic (temporary file + rename): the launcher polls the file while the workers run.
    """
    path = os.environ.get(OUTCOME_ENV)
    if not path:
        return
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"status": status, "message": message, "permanent": permanent}, f)
    os.replace(tmp_name, path)


def read_outcome(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
