"""How a training run ended, handed from the workers to the launcher through a small JSON file.

Workers exit 0 when they stop on purpose (finished, preempted, diverged), so that torchrun
does not restart the group for something a restart cannot fix; the launcher then reads
this file to exit with the right code. Crashes (non-zero exits) are torchrun's to restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

OUTCOME_ENV = "LAMBDA_REPRO_OUTCOME_FILE"
FINISHED, PREEMPTED, FAILED = "finished", "preempted", "failed"
# The launcher's exit code for each outcome: 75 is EX_TEMPFAIL ("try again"): rerun to resume.
EXIT_CODES = {FINISHED: 0, PREEMPTED: 75, FAILED: 1}


def write_outcome(status: str, message: str) -> None:
    """Record the outcome where the launcher asked for it (no-op when not launched by it)."""
    path = os.environ.get(OUTCOME_ENV)
    if path:
        Path(path).write_text(json.dumps({"status": status, "message": message}), encoding="utf-8")


def read_outcome(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
