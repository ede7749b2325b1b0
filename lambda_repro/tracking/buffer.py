"""The local record of everything a tracker was asked to log, so that nothing depends on MLflow being up.

One tracker session writes two append-only JSON-lines files in the buffer directory:

* ``<session>.jsonl``: every call, in order, each with a sequence number ``seq``;
* ``<session>.delivered.jsonl``: the ``seq`` of each record MLflow accepted (with the
  MLflow run id for the ``start`` record), so a replay sends only what is missing.

Artifacts that could not be delivered are copied to ``<session>.artifacts/<seq>/`` at
once, so a file changed or deleted later is still loadable as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

RECORDS_SUFFIX = ".jsonl"
DELIVERED_SUFFIX = ".delivered.jsonl"
ARTIFACTS_SUFFIX = ".artifacts"


def new_session_name() -> str:
    """Sortable by start time, unique across processes and machines."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RecordBuffer:
    """The two files of one session (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, session: str) -> None:
        self.directory = Path(directory)
        self.session = session
        self.records_path = self.directory / f"{session}{RECORDS_SUFFIX}"
        self.delivered_path = self.directory / f"{session}{DELIVERED_SUFFIX}"
        self.artifacts_dir = self.directory / f"{session}{ARTIFACTS_SUFFIX}"
        self._next_seq = len(self.records()) if self.records_path.exists() else 0

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (given the next ``seq``) and flush it to the OS before returning it."""
        record = {"seq": self._next_seq, **record}
        self._append_line(self.records_path, record)
        self._next_seq += 1
        return record

    def mark_delivered(self, seq: int, **details: Any) -> None:
        self._append_line(self.delivered_path, {"seq": seq, **details})

    def records(self) -> list[dict[str, Any]]:
        return _read_lines(self.records_path)

    def delivered(self) -> dict[int, dict[str, Any]]:
        return {entry["seq"]: entry for entry in _read_lines(self.delivered_path)}

    def pending(self) -> list[dict[str, Any]]:
        delivered = self.delivered()
        return [record for record in self.records() if record["seq"] not in delivered]

    def stash_artifact(self, seq: int, path: str | os.PathLike) -> Path:
        """Copy a file or directory to be logged later; returns the copy."""
        source = Path(path)
        target = self.artifacts_dir / str(seq) / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        return target

    def stashed_artifact(self, seq: int) -> Path | None:
        folder = self.artifacts_dir / str(seq)
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        return entries[0] if entries else None

    def _append_line(self, path: Path, payload: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one whole line: a process killed mid-run leaves at most a truncated
        # last line, which the readers skip. NaN/inf metrics are kept (Python's JSON allows them).
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(payload, sort_keys=True) + "\n")
            f.flush()


def sessions(buffer_dir: str | os.PathLike) -> list[RecordBuffer]:
    """Every session in ``buffer_dir``, oldest first."""
    directory = Path(buffer_dir)
    names = sorted(
        p.name[: -len(RECORDS_SUFFIX)]
        for p in directory.glob(f"*{RECORDS_SUFFIX}")
        if not p.name.endswith(DELIVERED_SUFFIX)
    )
    return [RecordBuffer(directory, name) for name in names]


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            # Only a last line cut short by a killed process is expected; say so either way.
            where = "last line (cut short by a killed process?)" if number == len(lines) else f"line {number}"
            warnings.warn(f"{path}: skipped unreadable {where}", RuntimeWarning, stacklevel=2)
    return entries
