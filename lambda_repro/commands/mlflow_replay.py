"""``lambda-repro mlflow-replay``: load the MLflow records a run could not deliver (its buffer)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("mlflow-replay", help="load the MLflow records a run could not deliver (its buffer)")
    parser.add_argument("buffer_dir", help="the tracker's buffer directory, e.g. metrics/mlflow_buffer")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else each run's own")
    parser.add_argument("--all", action="store_true", help="also send what was delivered (into a fresh store)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lambda_repro.tracking import replay_buffer  # MLflow is slow to import; only this command needs it

    print(replay_buffer(args.buffer_dir, args.tracking_uri, include_delivered=args.all))
    return 0
