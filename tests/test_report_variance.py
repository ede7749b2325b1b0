"""The variance-aware verdict: t-intervals on known numbers, the paired difference, the verdict on an interval."""

from __future__ import annotations

import math

import pytest

from lambda_repro.reporting.comparison import BELOW, NOT_COMPARABLE, REPRODUCED, WITHIN, Tolerance, compare_accuracy
from lambda_repro.reporting.variance import (
    RunScore,
    accuracy_over_runs,
    interval_verdict,
    paired_difference,
    summarize,
    t_interval,
)
from lambda_repro.reporting.variance_section import (
    NO_DIFFERENCE,
    difference_table,
    model_table,
    published_verdict_text,
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
    text = published_verdict_text(summary, Tolerance())
    assert text.startswith("Published table: REPRODUCED (rests on 3 runs of lambda_resnet50 (seeds 0, 1, 2); ")
    assert "published figure within the 95% interval widened by the tolerance, 0.5 top-1" in text


def test_a_tight_interval_far_below_is_below_published():
    runs = [imagenet_run(s, v) for s, v in enumerate((76.0, 76.2, 76.4))]
    summary = summarize(runs)
    assert summary.metric_verdicts == {"top1": BELOW, "top5": WITHIN}
    assert summary.verdict == BELOW
    assert interval_verdict(t_interval([76.0, 76.2, 76.4]), 78.208, 0.5) == BELOW
    # [75.70, 76.70] + 0.5 still lies below 78.208
    assert published_verdict_text(summary, Tolerance()).startswith("Published table: BELOW PUBLISHED (rests on 3 runs")


def test_one_run_keeps_the_point_rule_and_says_it_has_no_interval():
    single = compare_accuracy(imagenet_run(0, 77.4).scores)
    assert single.verdict == BELOW
    assert accuracy_over_runs(single, {"top1": t_interval([77.4])}).runs == 1
    summary = summarize([imagenet_run(0, 77.4)])
    assert (summary.verdict, summary.verdict_runs) == (BELOW, 1)
    assert "Published table: BELOW PUBLISHED (rests on 1 run: no interval; |measured - published| within" in (
        published_verdict_text(summary, Tolerance())
    )


def test_a_not_comparable_run_stays_not_comparable_over_many_runs():
    runs = [imagenet_run(s, v) for s, v in enumerate((78.0, 78.2, 78.1))]
    runs = [RunScore(r.model, r.seed, r.scores | {"epochs_trained": 10}) for r in runs]
    summary = summarize(runs)
    assert summary.verdict == NOT_COMPARABLE and summary.verdict_runs == 3
    assert summary.metric_verdicts == {}
    assert "trained 10 epochs" in published_verdict_text(summary, Tolerance())


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
    table = model_table(summary, "resnet50")
    assert list(table.iloc[0]) == ["top-1", 3, "72.33", "1.53", "[68.54, 76.13]", "0: 71.00, 1: 72.00, 2: 74.00"]
    differences = difference_table(summary)
    assert list(differences["meaning"]) == [
        "resnet50 better",
        NO_DIFFERENCE,
    ]  # top-1 [-12.77, -9.90]; top-5: 0 every seed
    assert "NOT COMPARABLE" in published_verdict_text(summary, Tolerance())


def test_the_headline_says_below_on_the_interval_and_how_many_runs_it_rests_on():
    from lambda_repro.reporting.build import ReportConfig, _headline
    from lambda_repro.reporting.inputs import ReportInputs

    runs = [imagenet_run(s, v) for s, v in enumerate((76.0, 76.2, 76.4))]
    summary = summarize(runs)
    accuracy = accuracy_over_runs(compare_accuracy(runs[0].scores), summary.per_model["lambda_resnet50"], (0, 1, 2))
    verdict = _headline(accuracy, "exact match", ReportInputs(eval=runs[0].scores), ReportConfig())[0]
    assert verdict.title == "Accuracy: BELOW PUBLISHED"
    assert verdict.lines[0] == (
        "top-1: mean 76.200 over 3 runs, 95% interval [75.703, 76.697], vs published 78.208 (-2.008)"
    )
    assert "rests on 3 runs of lambda_resnet50 (seeds 0, 1, 2)" in verdict.lines[2]
    alone = _headline(
        compare_accuracy(runs[0].scores), "exact match", ReportInputs(eval=runs[0].scores), ReportConfig()
    )
    assert alone[0].lines[2] == "rests on 1 run: no interval"
    assert alone[0].lines[0] == "top-1: measured 76.000 vs published 78.208 (-2.208)"
