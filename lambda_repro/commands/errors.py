"""Bad input to a command: reported as one line on stderr with exit code 1, never as a traceback."""

from __future__ import annotations

from PIL import UnidentifiedImageError

from lambda_repro.data import DataError
from lambda_repro.models import CheckpointError
from lambda_repro.param_types import ParamError


class CommandError(ValueError):
    """What the user gave cannot be used (a missing file, a folder in the wrong layout, ...)."""


# Errors that mean bad input, not a bug: shown without a traceback.
USER_ERRORS = (CommandError, CheckpointError, DataError, ParamError, UnidentifiedImageError, FileNotFoundError)


def one_line(err: BaseException) -> str:
    """The error's message on one line; a DataLoader worker's re-raised error keeps only its original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if any(line.startswith("Original Traceback") for line in lines):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return " ".join(lines)
