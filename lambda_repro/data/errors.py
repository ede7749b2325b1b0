"""The one error type of the data package: bad input, described in one line that names the path or param."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset, manifest or data parameter that cannot be used.

    ``details`` holds the full list behind a summarised message (e.g. every undecodable file),
    so a caller can print it in full while the message itself stays one line.
    """

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])
