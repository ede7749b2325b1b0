"""Command line: lambda-repro summary | validate | benchmark | predict | mlflow-replay (--help on each).

Bad input (a missing file, a folder in the wrong layout, a checkpoint that does not fit)
ends with one line on stderr and exit code 1, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from lambda_repro.commands import COMMANDS
from lambda_repro.commands.errors import USER_ERRORS, one_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"lambda-repro {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lambda-repro {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
