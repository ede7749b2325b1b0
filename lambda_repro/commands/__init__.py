"""The ``lambda-repro`` commands, one module each: ``add_parser(subparsers)`` registers it, ``run(args)`` runs it."""

from lambda_repro.commands import benchmark, mlflow_replay, predict, summary, validate

COMMANDS = (summary, validate, benchmark, predict, mlflow_replay)

__all__ = ["COMMANDS"]
