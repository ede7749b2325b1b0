"""The training stage's metrics files (formats in docs/pipeline.md): one CSV row per epoch, one JSON summary."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lambda_repro.metrics_files import write_metrics

HISTORY_COLUMNS = ("epoch", "train_loss", "train_top1", "lr", "img_per_s", "val_top1", "val_top5", "epoch_s")


def write_history(path: str | os.PathLike, rows: list[dict]) -> None:
    """``metrics/train_history.csv``: one row per finished epoch, 1-based epoch numbers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


# The summary's entries compared across runs (DVC metrics), under the short names train.json gives them;
# the other entries (world size, batch, lr: settings) go to train_info.json.
SUMMARY_METRICS = {
    "epochs": "epochs",
    "final_train_loss": "train_loss",
    "final_val_top1": "top1",
    "final_val_top5": "top5",
    "best_val_top1": "best_top1",
    "img_per_s": "img_per_s",
    "wall_s": "wall_s",
}


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    """``metrics/train.json`` (the numbers of :data:`SUMMARY_METRICS`, short names) and ``train_info.json``."""
    numbers = {short: summary.get(key) for key, short in SUMMARY_METRICS.items()}
    if isinstance(numbers["img_per_s"], float):
        numbers["img_per_s"] = round(numbers["img_per_s"], 2)
    info = {key: value for key, value in summary.items() if key not in SUMMARY_METRICS}
    write_metrics(path, numbers, info)
