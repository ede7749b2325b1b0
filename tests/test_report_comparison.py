"""The verdict logic of the report: exact counts, accuracy tolerances, and the runs that cannot be compared."""

from __future__ import annotations

import pytest

from lambda_repro.published import PUBLISHED_MACS_224, PUBLISHED_PARAMS
from lambda_repro.reporting.comparison import (
    ABOVE,
    BELOW,
    EXACT_MATCH,
    MISMATCH,
    NOT_COMPARABLE,
    NOT_MEASURED,
    REPRODUCED,
    WITHIN,
    Tolerance,
    compare_accuracy,
    compare_counts,
    metric_verdict,
    overall_count_verdict,
)


def imagenet_eval(**changes) -> dict:
    """A comparable evaluation: full ImageNet val at 224 / 256 after 130 epochs."""
    metrics = {
        "top1": 78.0,
        "top5": 93.9,
        "images": 50_000,
        "resolution": 224,
        "resize": 256,
        "model": "lambda_resnet50",
        "dataset": "imagenet",
        "epochs_trained": 130,
    }
    metrics.update(changes)
    return metrics


def test_counts_match_exactly_or_not():
    params, macs = compare_counts(PUBLISHED_PARAMS, PUBLISHED_MACS_224)
    assert (params.verdict, macs.verdict) == (EXACT_MATCH, EXACT_MATCH)
    assert overall_count_verdict((params, macs)) == EXACT_MATCH
    params, macs = compare_counts(PUBLISHED_PARAMS + 1, PUBLISHED_MACS_224)
    assert params.verdict == MISMATCH and params.delta == 1
    assert overall_count_verdict((params, macs)) == MISMATCH
    assert overall_count_verdict(compare_counts(None, None)) == NOT_MEASURED


@pytest.mark.parametrize(
    ("delta", "tolerance", "verdict"),
    [(0.0, 0.5, WITHIN), (-0.5, 0.5, WITHIN), (0.5, 0.5, WITHIN), (-0.51, 0.5, BELOW), (0.6, 0.5, ABOVE)],
)
def test_metric_verdict_edges(delta, tolerance, verdict):
    assert metric_verdict(delta, tolerance) == verdict


def test_within_tolerance_is_reproduced():
    result = compare_accuracy(imagenet_eval(top1=77.75, top5=94.25))
    assert result.verdict == REPRODUCED and result.comparable
    top1, top5 = result.metrics
    assert top1.delta == pytest.approx(-0.458) and top1.verdict == WITHIN
    assert top5.delta == pytest.approx(0.43) and top5.verdict == WITHIN


def test_below_tolerance_on_either_metric_is_below_published():
    assert compare_accuracy(imagenet_eval(top1=77.5)).verdict == BELOW
    assert compare_accuracy(imagenet_eval(top5=93.0)).verdict == BELOW
    # One above and one below: below wins, the shortfall is what matters.
    assert compare_accuracy(imagenet_eval(top1=79.5, top5=92.0)).verdict == BELOW


def test_above_tolerance_is_above_published():
    assert compare_accuracy(imagenet_eval(top1=79.0)).verdict == ABOVE


def test_tolerance_is_a_parameter():
    assert compare_accuracy(imagenet_eval(top1=77.5), tolerance=Tolerance(top1=1.0)).verdict == REPRODUCED
    assert compare_accuracy(imagenet_eval(top1=78.1), tolerance=Tolerance(top1=0.05)).verdict == BELOW


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"dataset": "synthetic"}, "embedded synthetic dataset"),
        ({"resolution": 64}, "evaluated at 64 px"),
        ({"epochs_trained": 4}, "trained 4 epochs, fewer than the 130"),
        ({"model": "resnet50"}, "model is resnet50"),
        ({"images": 10_000}, "10,000 of the 50,000"),
        ({"resize": 232}, "resized to 232"),
        ({"epochs_trained": None}, "epochs trained unknown"),
        ({"top5": None}, "lack top5"),
    ],
)
def test_not_comparable_runs_say_why_and_get_no_accuracy_verdict(changes, reason):
    # The accuracy itself would be "reproduced": only comparability decides.
    result = compare_accuracy(imagenet_eval(**changes))
    assert result.verdict == NOT_COMPARABLE and not result.comparable
    assert any(reason in r for r in result.reasons), result.reasons
    assert all(row.verdict == NOT_COMPARABLE for row in result.metrics)


def test_embedded_run_lists_every_reason_and_keeps_the_difference():
    embedded = {"top1": 61.25, "top5": 88.5, "images": 160, "resolution": 64, "resize": 73}
    embedded |= {"model": "lambda_resnet50", "dataset": "synthetic", "epochs_trained": 4}
    result = compare_accuracy(embedded)
    assert result.verdict == NOT_COMPARABLE
    assert len(result.reasons) == 3  # dataset, resolution, epochs
    assert result.metrics[0].delta == pytest.approx(61.25 - 78.208)


def test_missing_eval_is_not_comparable():
    result = compare_accuracy(None)
    assert result.verdict == NOT_COMPARABLE
    assert result.reasons == ("no evaluation metrics (metrics/eval.json missing or empty)",)
    assert [row.measured for row in result.metrics] == [None, None]


def test_epochs_fall_back_to_the_training_summary():
    evaluation = imagenet_eval(epochs_trained=None)
    assert compare_accuracy(evaluation, {"epochs": 130}).verdict == REPRODUCED
    assert compare_accuracy(evaluation, {"epochs": 90}).verdict == NOT_COMPARABLE
    assert compare_accuracy(evaluation, {"epochs": 90}, Tolerance(min_epochs=90)).verdict == REPRODUCED


def test_tolerance_rejects_nonsense():
    with pytest.raises(ValueError):
        Tolerance(top1=-1)
    with pytest.raises(ValueError):
        Tolerance(min_epochs=0)
