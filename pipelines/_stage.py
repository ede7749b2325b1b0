"""What every stage entry point shares: its command line, the params (preset merged and checked), its errors.

A stage is ``main = stage("name", run)`` with ``run(params, args) -> exit code``:
:func:`stage` parses ``--params`` (default params.yaml) and ``--metrics-dir`` (where the
pipeline's metrics files are; dvc.yaml passes it), loads the params with the preset of
``preset:`` merged over them, checks the sections the stage reads, and turns the errors a
user can fix (params, data, checkpoints) into one line ``<stage>: error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from lambda_repro.config import ParamError, load_effective_params, validate_params
from lambda_repro.data import DataError
from lambda_repro.models import CheckpointError

__all__ = ["ParamError", "stage"]

USER_ERRORS = (ParamError, DataError, CheckpointError)
StageBody = Callable[[dict[str, Any], argparse.Namespace], int]


def stage(
    name: str, body: StageBody, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[list[str] | None], int]:
    """The ``main(argv)`` of stage ``name``: ``body(params, args)`` with the shared arguments and error handling."""

    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"pipelines/{name}", description=doc.splitlines()[0])
        parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
        parser.add_argument("--metrics-dir", default="metrics", help="the pipeline's metrics files (default: metrics)")
        if add_arguments is not None:
            add_arguments(parser)
        args = parser.parse_args(argv)
        try:
            params = load_effective_params(args.params)
            validate_params(params, name, source=args.params)
            return body(params, args)
        except USER_ERRORS as err:
            for line in getattr(err, "details", []):  # e.g. every undecodable image, before the summary line
                print(f"  {line}", file=sys.stderr)
            return fail(name, str(err))

    return main


def fail(name: str, message: str, code: int = 1) -> int:
    """Print a one-line error for stage ``name`` and return the exit code."""
    print(f"{name}: error: {message}", file=sys.stderr)
    return code
