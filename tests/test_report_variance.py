"""The variance-aware verdict: t-intervals on known numbers, the paired difference, the verdict on an interval."""

from __future__ import annotations

import math

import pytest

from lambda_repro.reporting.comparison import BELOW, NOT_COMPARABLE, REPRODUCED, compare_accuracy
from lambda_repro.reporting.variance import (
    RunScore,
    interval_verdict,
    paired_difference,
    render_markdown,
    summarize,
    t_interval,
)


def test_t_interval_on_known_numbers():
    interval = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445: half width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert (interval.mean, interval.n) == (3.0, 5)
    assert interval.std == pytest.approx(math.sqrt(2.5))
    assert (interval.low, interval.high) == (pytest.approx(1.036757, abs=1e-6), pytest.approx(4.963243, abs=1e-6))


def test_one_value_is_its_own_interval_without_a_spread():
    interval = t_interval([77.5])
    assert (interval.low, interval.mean, interval.high, interval.n) == (77.5, 77.5, 77.5, 1)
    assert math.isnan(interval.std)


def test_paired_difference_uses_the_common_seeds_only():
    lam = {0: 80.0, 1: 82.0, 2: 81.0}
    conv = {0: 78.0, 1: 79.0, 2: 80.0, 3: 90.0}  # seed 3 has no lambda run: left out
    diff = paired_difference(lam, conv)
    # differences 2, 3, 1: mean 2, s 1, t(0.975, 2) = 4.302653: half width 2.484138
    assert (diff.mean, diff.std, diff.n) == (2.0, 1.0, 3)
    assert (diff.low, diff.high) == (pytest.approx(-0.484138, abs=1e-6), pytest.approx(4.484138, abs=1e-6))
    assert paired_difference({0: 1.0}, {1: 2.0}) is None


def imagenet_run(seed: int, top1: float, top5: float = 93.8, model: str = "lambda_resnet50") -> RunScore:
    scores = {
        "top1": top1,
        "top5": top5,
        "model": model,
        "dataset": "imagenet",
        "images": 50_000,
        "resolution": 224,
        "resize": 256,
        "epochs_trained": 130,
    }
    return RunScore(model, seed, scores)


def test_the_verdict_uses_the_interval_where_one_run_alone_would_be_below():
    runs = [imagenet_run(0, 77.0), imagenet_run(1, 78.0), imagenet_run(2, 77.2)]
    # The mean, 77.4, is 0.81 below 78.208: as a single run it would be "below published".
    assert compare_accuracy(runs[0].scores | {"top1": 77.4}).verdict == BELOW
    summary = summarize(runs)
    interval = summary.per_model["lambda_resnet50"]["top1"]
    assert interval.low < 78.208 - 0.5 < interval.high  # [76.09, 78.71]: the published figure is within
    assert (summary.verdict, summary.verdict_runs) == (REPRODUCED, 3)
    assert "rests on 3 runs of lambda_resnet50" in render_markdown(summary)


def test_a_tight_interval_far_below_is_below_published():
    runs = [imagenet_run(s, v) for s, v in enumerate((76.0, 76.2, 76.4))]
    summary = summarize(runs)
    assert summary.metric_verdicts == {"top1": BELOW, "top5": REPRODUCED}
    assert summary.verdict == BELOW
    assert interval_verdict(t_interval([76.0, 76.2, 76.4]), 78.208, 0.5) == BELOW


def test_synthetic_runs_are_not_comparable_but_give_the_lambda_vs_conv_difference():
    def synthetic(model: str, seed: int, top1: float) -> RunScore:
        scores = {"top1": top1, "top5": 99.0, "model": model, "dataset": "synthetic", "resolution": 32}
        return RunScore(model, seed, scores | {"epochs_trained": 3})

    runs = [synthetic("lambda_resnet50", s, 60.0 + s) for s in range(3)]
    runs += [synthetic("resnet50", s, 70.0 + 2 * s) for s in range(3)]
    runs.append(synthetic("resnet50", 0, 71.0))  # a rerun of seed 0: the later one counts
    summary = summarize(runs)
    assert summary.verdict == NOT_COMPARABLE
    assert any("not ImageNet" in reason for reason in summary.verdict_reasons)
    assert summary.per_model["resnet50"]["top1"].mean == pytest.approx((71.0 + 72.0 + 74.0) / 3)
    assert summary.paired_seeds == (0, 1, 2)
    assert summary.difference["top1"].mean == pytest.approx(((60 - 71) + (61 - 72) + (62 - 74)) / 3)
    text = render_markdown(summary)
    assert "| resnet50 | 3 | 72.33 |" in text
    assert "lambda_resnet50 - resnet50**, paired by seed (3 seeds: 0, 1, 2)" in text
    assert "resnet50 better" in text and "NOT COMPARABLE" in text


def test_runs_of_an_experiment_set_are_read_from_mlflow_by_baseline_commit(tmp_path):
    from lambda_repro.reporting.experiment_runs import runs_from_mlflow
    from lambda_repro.tracking import RunTracker

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"

    def tracked(model: str, seed: int, top1: float, rev: str, evaluated: bool = True) -> None:
        tags = {"dataset": "Fashion-MNIST", "dataset.kind": "fashion_mnist", "dvc.baseline_rev": rev}
        with RunTracker(uri, "set", f"{model} seed{seed}", tags, tmp_path / "buffer", system_metrics=False) as run:
            params = {"model.name": model, "seed": seed, "train.epochs": 3, "evaluate.image_size": 32}
            if evaluated:
                params |= {"eval.top1": top1, "eval.top5": 99.5, "eval.images": 1000}
            run.log_params(params)

    tracked("lambda_resnet50", 0, 81.5, "abc")
    tracked("resnet50", 0, 84.0, "abc")
    tracked("resnet50", 1, 10.0, "other")  # another experiment set
    tracked("resnet50", 2, 0.0, "abc", evaluated=False)  # not evaluated: left out
    runs = runs_from_mlflow(uri, "set", "abc")
    assert [(r.model, r.seed, r.scores["top1"], r.name) for r in runs] == [
        ("lambda_resnet50", 0, 81.5, "lambda_resnet50 seed0"),
        ("resnet50", 0, 84.0, "resnet50 seed0"),
    ]
    assert runs[0].scores | {"top1": 0} == {
        "top1": 0,
        "top5": 99.5,
        "model": "lambda_resnet50",
        "dataset": "fashion_mnist",
        "images": 1000,
        "resolution": 32,
        "resize": 37,
        "epochs_trained": 3,
    }
    assert len(runs_from_mlflow(uri, "set")) == 3
