"""`dvc metrics show` fits a 120-column terminal: few, short-named numbers per metrics file.

The table is DVC's own (``dvc.compare.metrics_table`` rendered as ``dvc metrics show`` does, at its
default precision), built from the metrics files dvc.yaml lists: no DVC command, no git.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lambda_repro.profiling import profile_summary
from lambda_repro.training.metrics_files import write_summary
from pipelines.evaluate import METRIC_KEYS as EVAL_KEYS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAX_COLUMNS = 120


def dvc_metrics_files() -> list[str]:
    """The ``metrics:`` entries of every stage in dvc.yaml, ``${metrics_dir}`` resolved."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    metrics_dir = next(v["metrics_dir"] for v in pipeline["vars"] if "metrics_dir" in v)
    paths = []
    for stage in pipeline["stages"].values():
        for entry in stage.get("metrics", []):
            name = next(iter(entry)) if isinstance(entry, dict) else entry
            paths.append(name.replace("${metrics_dir}", metrics_dir))
    return paths


def metrics_show(metrics: dict[str, dict], capsys) -> str:
    """What ``dvc metrics show`` prints for these files' contents."""
    from dvc.commands.metrics import DEFAULT_PRECISION
    from dvc.compare import metrics_table

    capsys.readouterr()
    tree = {"workspace": {"data": {path: {"data": data} for path, data in metrics.items()}}}
    metrics_table(tree, precision=DEFAULT_PRECISION).render()
    return capsys.readouterr().out


def widest_line(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_dvc_yaml_lists_the_three_small_metrics_files():
    assert dvc_metrics_files() == ["metrics/train.json", "metrics/eval.json", "metrics/profile.json"]


def test_the_committed_baseline_fits_120_columns(capsys):
    metrics = {path: json.loads((PROJECT_ROOT / path).read_text()) for path in dvc_metrics_files()}
    for path, data in metrics.items():
        assert all(isinstance(v, int | float) or v is None for v in data.values()), path  # numbers only
    table = metrics_show(metrics, capsys)
    assert table.splitlines()[0].split()[0] == "Path" and len(table.splitlines()) == 4  # header + one row per file
    assert widest_line(table) <= MAX_COLUMNS, table


def test_what_the_stages_write_fits_120_columns_at_its_widest(capsys, tmp_path):
    """Values of the widest usual form (96.875 % of 160 images, four-digit losses, 1000+ s)."""
    write_summary(
        tmp_path / "train.json",
        {
            "epochs": 130,
            "final_train_loss": 2.123456789,
            "final_train_top1": 77.77,
            "final_val_top1": 96.875,
            "final_val_top5": 99.375,
            "best_val_top1": 96.875,
            "img_per_s": 1234.5678,
            "world_size": 8,
            "global_batch": 256,
            "peak_lr": 0.1,
            "wall_s": 123456.7,
        },
    )
    stats = {"median": 123.456789, "p25": 1.0, "p75": 2.0}
    profile = profile_summary(
        {
            "train": {"bs8": stats},
            "inference": {"bs1": stats, "bs8": stats},
            "latency_ms": {"p50": 1234.5678},
            "peak_memory_mb": {"train": 12345.6},
        }
    )
    metrics = {
        "metrics/train.json": json.loads((tmp_path / "train.json").read_text()),
        "metrics/eval.json": {key: {"top1": 96.875, "top5": 99.375, "loss": 1.2346}[key] for key in EVAL_KEYS},
        "metrics/profile.json": profile,
    }
    table = metrics_show(metrics, capsys)
    assert widest_line(table) <= MAX_COLUMNS, table
    # The shared names: one column each, read per row (train loss vs val loss, run vs profiled training step).
    header = table.splitlines()[0].split()
    assert header.count("loss") == 1 and header.count("train_img_s") == 1 and len(header) == 10  # Path and 9 names
