"""The training stage's metrics files (formats in docs/pipeline.md): one CSV row per epoch, one JSON summary."""

from __future__ import annotations

import csv
import math
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


# The summary's entries compared across runs (DVC metrics), under the short names train.json gives them, with
# the digits shown. `dvc metrics show` prints one column per distinct name and one row per file: names shared
# with the other metrics files for a quantity of the same kind keep it within 120 columns (`loss`: eval.json's is
# the val loss; `train_img_s`: profile.json's is the profiled training step's). The other entries go to
# train_info.json: settings (epochs, world size, batch, lr), the final train top-1, and the final val top-1 /
# top-5, which equal eval.json's (the same checkpoint, scored the same way) and would only repeat its columns.
SUMMARY_METRICS = {
    "final_train_loss": ("loss", 4),
    "best_val_top1": ("best_top1", 4),
    "img_per_s": ("train_img_s", 2),
    "wall_s": ("wall_s", 0),  # whole seconds: DVC shows a float of 6+ digits as 1.2346e+05
}


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    """``metrics/train.json`` (the numbers of :data:`SUMMARY_METRICS`, short names) and ``train_info.json``."""
    numbers = {}
    for key, (short, digits) in SUMMARY_METRICS.items():
        value = summary.get(key)
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, digits) if digits else round(value)
        numbers[short] = value
    info = {key: value for key, value in summary.items() if key not in SUMMARY_METRICS}
    write_metrics(path, numbers, info)
