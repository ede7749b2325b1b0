"""``lambda-repro summary``: params / MACs / FLOPs of the model family beside the published table."""

from __future__ import annotations

import argparse

from lambda_repro.models import create_model, list_models
from lambda_repro.profiling import count_macs, count_params
from lambda_repro.published import PUBLISHED_MACS_224, PUBLISHED_MODEL, PUBLISHED_PARAMS

SUMMARY_MODELS = (
    "lambda_resnet26",
    "lambda_resnet38",
    "lambda_resnet50",
    "lambda_resnet101",
    "lambda_resnet152",
    "resnet50",
)


def summary_rows(names: tuple[str, ...], resolution: int) -> list[dict]:
    rows = []
    for name in names:
        model = create_model(name)
        macs = count_macs(model, (1, 3, resolution, resolution))
        rows.append({"model": name, "params": count_params(model), "macs": macs})
    return rows


def format_summary(rows: list[dict], resolution: int) -> str:
    lines = [
        f"{'model':<18} {'params':>13} {'GMACs':>8} {'GFLOPs':>8}   published ({resolution}x{resolution})",
        "-" * 72,
    ]
    for row in rows:
        published = ""
        if row["model"] == PUBLISHED_MODEL and resolution == 224:
            same = row["params"] == PUBLISHED_PARAMS and row["macs"] == PUBLISHED_MACS_224
            published = f"14.995M / 6.576G  {'exact match' if same else 'MISMATCH'}"
        gmacs = row["macs"] / 1e9
        lines.append(f"{row['model']:<18} {row['params']:>13,} {gmacs:>8.3f} {2 * gmacs:>8.3f}   {published}")
    lines.append("MACs = multiply-accumulates (the published table's 'FLOPs'); GFLOPs = 2 x GMACs.")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("summary", help="params / MACs / FLOPs of the model family vs the published table")
    parser.add_argument("--models", nargs="+", default=list(SUMMARY_MODELS), choices=list_models())
    parser.add_argument("--resolution", type=int, default=224)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(format_summary(summary_rows(tuple(args.models), args.resolution), args.resolution))
    return 0
