"""Faults: a process killed (SIGKILL) in the middle of writing a checkpoint never replaces the last good one.

(A full disk is ``tests/test_checkpoint.py::test_save_is_atomic_when_writing_fails``.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from lambda_repro.models import CheckpointError, read_checkpoint, save_checkpoint

pytestmark = pytest.mark.faults

# Saves a new checkpoint over the old one, but stops for good halfway through the bytes,
# after telling the test (through a marker file) that the write is under way.
WRITER = """
import sys, time, torch
from pathlib import Path
from lambda_repro.models import save_checkpoint

target, marker = sys.argv[1], Path(sys.argv[2])
real_save = torch.save

def save_then_hang(obj, f, *args, **kwargs):
    import io
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    marker.write_text("halfway")
    time.sleep(600)

torch.save = save_then_hang
save_checkpoint({"state_dict": {"w": torch.zeros(256, 256)}, "epoch": 2}, target)
"""


def test_checkpoint_write_killed_halfway_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    good = {"state_dict": {"w": torch.ones(256, 256)}, "epoch": 1}
    save_checkpoint(good, path)
    before = path.read_bytes()

    marker = tmp_path / "writing"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the writer never got halfway (exit {writer.poll()})"
        (half_written,) = [p for p in path.parent.iterdir() if p != path]
        assert 0 < half_written.stat().st_size < len(before)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)

    assert writer.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    restored = read_checkpoint(path)
    assert restored["epoch"] == 1 and torch.equal(restored["state_dict"]["w"], good["state_dict"]["w"])
    # The killed write leaves only its hidden temporary file, never a torn last.pt.
    leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.") and leftovers[0].endswith(".tmp")


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def _torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "make", "says"),
    [
        ("empty", lambda marker: b"", r"is empty \(0 bytes\): not a checkpoint"),
        ("truncated", lambda marker: _torch_bytes({"w": torch.zeros(500)})[:900], r"is truncated: a zip archive \(900"),
        ("random bytes", lambda marker: bytes(range(1, 256)) * 8, r"is not a checkpoint at all \(2040 bytes"),
        ("random pickle-like", lambda marker: b"\x80" + bytes(range(255, 0, -1)) * 4, r"is damaged: its pickle"),
        (
            "code-running pickle",
            lambda marker: __import__("pickle").dumps(_RunsCode(marker), protocol=4),
            r"refused to load .*: it holds objects that would run code when loaded \(posix\.mkdir\); nothing was run",
        ),
        (
            "code-running torch.save",
            lambda marker: _torch_bytes({"state_dict": {}, "x": _RunsCode(marker)}),
            r"refused to load .*would run code when loaded \(posix\.mkdir\); nothing was run",
        ),
    ],
)
def test_unusable_checkpoint_errors_say_what_the_file_is_and_how_to_go_on(tmp_path, kind, make, says):
    marker = tmp_path / "code-ran"
    path = tmp_path / "last.pt"
    path.write_bytes(make(str(marker)))
    with pytest.raises(CheckpointError, match=says) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert message.lower().endswith("delete it to start training over, or use another checkpoint file")
    assert not marker.exists()


def test_a_checkpoint_of_another_model_names_the_model_it_was_made_for(tmp_path):
    from lambda_repro.models import create_model, load_checkpoint

    path = tmp_path / "resnet.pt"
    save_checkpoint({"state_dict": create_model("resnet50", num_classes=2).state_dict(), "arch": "resnet50"}, path)
    with pytest.raises(
        CheckpointError, match=r"is a checkpoint of another model or recipe \(it was made for resnet50\)"
    ):
        load_checkpoint(create_model("lambda_resnet26", num_classes=2), path)
