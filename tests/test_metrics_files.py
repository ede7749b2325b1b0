"""Metrics files hold numbers a person compares; their context goes to the _info.json beside them."""

from __future__ import annotations

import json
import math

import pytest

from lambda_repro.metrics_files import info_path, read_metrics, write_metrics
from lambda_repro.profiling import profile_summary
from lambda_repro.training.metrics_files import write_summary


def test_numbers_and_context_go_to_two_files_and_read_back_merged(tmp_path):
    path = tmp_path / "metrics" / "eval.json"
    write_metrics(path, {"top1": 91.25, "top5": 99.0, "loss": math.nan}, info={"model": "resnet50", "images": 160})
    assert json.loads(path.read_text()) == {"top1": 91.25, "top5": 99.0, "loss": None}  # JSON has no NaN
    assert info_path(path) == tmp_path / "metrics" / "eval_info.json"
    assert json.loads(info_path(path).read_text()) == {"model": "resnet50", "images": 160}
    assert read_metrics(path) == {"model": "resnet50", "images": 160, "top1": 91.25, "top5": 99.0, "loss": None}


def test_a_string_is_refused_as_a_metric(tmp_path):
    with pytest.raises(TypeError, match="'dataset': DVC metrics are numbers"):
        write_metrics(tmp_path / "eval.json", {"top1": 1.0, "dataset": "synthetic"})


def test_a_metrics_file_without_info_reads_alone(tmp_path):
    (tmp_path / "train.json").write_text('{"epochs": 3}')
    assert read_metrics(tmp_path / "train.json") == {"epochs": 3}


def test_train_summary_keeps_four_short_named_rounded_numbers_and_moves_the_rest_to_info(tmp_path):
    summary = {
        "epochs": 8,
        "final_train_loss": 0.8338276758790016,
        "final_train_top1": 90.0,
        "final_val_top1": 95.625,
        "final_val_top5": 99.375,
        "best_val_top1": 96.25,
        "img_per_s": 12.3456,
        "world_size": 2,
        "global_batch": 32,
        "peak_lr": 0.025,
        "wall_s": 160.2,
    }
    write_summary(tmp_path / "train.json", summary)
    numbers = json.loads((tmp_path / "train.json").read_text())
    assert numbers == {
        "loss": 0.8338,  # the final train loss, in the column eval.json's val loss shares
        "best_top1": 96.25,
        "train_img_s": 12.35,
        "wall_s": 160,
    }
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info == {
        "epochs": 8,
        "final_train_top1": 90.0,
        "final_val_top1": 95.625,  # = eval.json's top1 (same checkpoint and preprocessing): not repeated as a metric
        "final_val_top5": 99.375,
        "world_size": 2,
        "global_batch": 32,
        "peak_lr": 0.025,
    }
    assert read_metrics(tmp_path / "train.json")["epochs"] == 8  # readers see both files merged

    summary.update(final_train_loss=math.nan, img_per_s=None)  # a diverged or empty run
    write_summary(tmp_path / "train.json", summary)
    numbers = json.loads((tmp_path / "train.json").read_text())
    assert numbers["loss"] is None and numbers["train_img_s"] is None


def test_profile_summary_is_the_models_headline_figures():
    stats = {"median": 3.14159, "p25": 3.0, "p75": 3.3, "n": 3}
    entry = {
        "params": 14_995_848,
        "macs": 6_575_505_408,
        "train": {"bs8": stats, "bs16": {"error": "out of memory"}},
        "inference": {"bs1": {**stats, "median": 5.0}, "bs8": {**stats, "median": 11.9}},
        "latency_ms": {"p50": 97.456, "p95": 120.0},
        "peak_memory_mb": {"train": 2068.4, "inference": 900.0},
    }
    assert profile_summary(entry) == {
        "train_img_s": 3.142,  # the first training batch
        "infer_img_s": 11.9,  # the largest inference batch
        "latency_ms": 97.46,
        "peak_mb": 2068,
    }
    entry["train"] = {"bs64": {"error": "out of memory"}}
    assert profile_summary(entry)["train_img_s"] is None


def test_profile_params_add_the_counts_for_mlflow():
    from lambda_repro.profiling import profile_params

    stats = {"median": 2.0}
    entry = {"params": 25_557_032, "macs": 4_089_184_256, "train": {"bs8": stats}, "inference": {"bs8": stats}}
    assert profile_params({"resnet50": entry}) == {
        "profile.resnet50.params_m": 25.557,
        "profile.resnet50.gmacs": 4.089,
        "profile.resnet50.train_img_s": 2.0,
        "profile.resnet50.infer_img_s": 2.0,
    }
