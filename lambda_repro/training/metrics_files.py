"""The training stage's metrics files (formats in docs/pipeline.md): one CSV row per epoch, one JSON summary."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

HISTORY_COLUMNS = ("epoch", "train_loss", "train_top1", "lr", "img_per_s", "val_top1", "val_top5", "epoch_s")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    """``metrics/train.json``: flat, so ``dvc metrics show`` lists every entry."""
    _atomic_write(Path(path), json.dumps(summary, indent=2) + "\n")
