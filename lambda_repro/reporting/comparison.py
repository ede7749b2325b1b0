"""How close a run came to the published table: pure functions, no files, no MLflow.

Counts (parameters, MACs at 224) must match exactly. Accuracy is compared only when the
run measures the same thing as the published row; otherwise the verdict is
``not comparable`` with every reason listed, never ``reproduced`` or ``below published``.

Verdict rule for a comparable run (``delta = measured - published``, in points):

* ``reproduced``: ``|delta| <= tolerance`` for top-1 and for top-5;
* ``below published``: top-1 or top-5 below by more than its tolerance;
* ``above published``: none below, at least one above by more than its tolerance.

A run is comparable when it is ``lambda_resnet50`` evaluated on the full ImageNet
validation set (50,000 images) at 224 (resize 256, centre crop 224, the published
protocol) after at least ``min_epochs`` epochs (the published recipe trains 130).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lambda_repro.published import (
    PUBLISHED_MACS_224,
    PUBLISHED_MODEL,
    PUBLISHED_PARAMS,
    PUBLISHED_TOP1,
    PUBLISHED_TOP5,
)

REPRODUCED = "reproduced"
BELOW = "below published"
ABOVE = "above published"
NOT_COMPARABLE = "not comparable"
WITHIN = "within tolerance"

EXACT_MATCH = "exact match"
MISMATCH = "mismatch"
NOT_MEASURED = "not measured"

PUBLISHED_RESOLUTION = 224
PUBLISHED_RESIZE = 256
PUBLISHED_EPOCHS = 130
IMAGENET_VAL_IMAGES = 50_000


@dataclass(frozen=True)
class Tolerance:
    """Allowed |measured - published| in points, and the fewest epochs a comparable run trains."""

    top1: float = 0.5
    top5: float = 0.5
    min_epochs: int = PUBLISHED_EPOCHS

    def __post_init__(self) -> None:
        if self.top1 < 0 or self.top5 < 0:
            raise ValueError("tolerances must be >= 0")
        if self.min_epochs < 1:
            raise ValueError("min_epochs must be >= 1")


@dataclass(frozen=True)
class MetricComparison:
    name: str
    published: float
    measured: float | None
    verdict: str
    tolerance: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.published


@dataclass(frozen=True)
class AccuracyComparison:
    verdict: str
    reasons: tuple[str, ...] = ()
    metrics: tuple[MetricComparison, ...] = field(default_factory=tuple)

    @property
    def comparable(self) -> bool:
        return self.verdict != NOT_COMPARABLE


def compare_count(name: str, published: int, measured: int | None) -> MetricComparison:
    """An exact-match comparison of a count (parameters, MACs)."""
    if measured is None:
        return MetricComparison(name, published, None, NOT_MEASURED)
    return MetricComparison(name, published, measured, EXACT_MATCH if measured == published else MISMATCH)


def compare_counts(params: int | None, macs_224: int | None) -> tuple[MetricComparison, MetricComparison]:
    """Parameters and MACs at 224 of the published model against the table."""
    return compare_count("params", PUBLISHED_PARAMS, params), compare_count("macs_224", PUBLISHED_MACS_224, macs_224)


def overall_count_verdict(counts: tuple[MetricComparison, ...]) -> str:
    """``mismatch`` if any count differs, ``exact match`` if all match, else ``not measured``."""
    verdicts = {c.verdict for c in counts}
    if MISMATCH in verdicts:
        return MISMATCH
    return EXACT_MATCH if verdicts == {EXACT_MATCH} else NOT_MEASURED


def comparability_problems(eval_metrics: dict | None, train_metrics: dict | None, tolerance: Tolerance) -> list[str]:
    """Every reason the run's accuracy cannot be set against the published row (empty: comparable)."""
    if not eval_metrics:
        return ["no evaluation metrics (metrics/eval.json missing or empty)"]
    problems = []
    missing = [key for key in ("top1", "top5") if not _is_number(eval_metrics.get(key))]
    if missing:
        problems.append(f"evaluation metrics lack {' and '.join(missing)}")
    model = eval_metrics.get("model")
    if model != PUBLISHED_MODEL:
        problems.append(f"model is {model or 'unknown'}, the published row is {PUBLISHED_MODEL}")
    dataset = eval_metrics.get("dataset")
    if dataset != "imagenet":
        what = "the embedded synthetic dataset" if dataset == "synthetic" else f"dataset {dataset or 'unknown'}"
        problems.append(f"evaluated on {what}, not ImageNet")
    else:
        images = eval_metrics.get("images")
        if _is_number(images) and images < IMAGENET_VAL_IMAGES:
            problems.append(f"evaluated on {int(images):,} of the {IMAGENET_VAL_IMAGES:,} ImageNet validation images")
    resolution = eval_metrics.get("resolution")
    if resolution != PUBLISHED_RESOLUTION:
        shown = f"{resolution} px" if resolution else "an unknown resolution"
        problems.append(f"evaluated at {shown}, the published figures are at {PUBLISHED_RESOLUTION} px")
    else:
        resize = eval_metrics.get("resize")
        if _is_number(resize) and resize != PUBLISHED_RESIZE:
            problems.append(f"resized to {resize} before the crop; the published protocol uses {PUBLISHED_RESIZE}")
    epochs = eval_metrics.get("epochs_trained")
    if not _is_number(epochs) and train_metrics:
        epochs = train_metrics.get("epochs")
    if not _is_number(epochs):
        problems.append("number of epochs trained unknown")
    elif epochs < tolerance.min_epochs:
        problems.append(
            f"trained {epochs:g} epochs, fewer than the {tolerance.min_epochs} a comparable run needs "
            f"(published recipe: {PUBLISHED_EPOCHS})"
        )
    return problems


def metric_verdict(delta: float, tolerance: float) -> str:
    if abs(delta) <= tolerance:
        return WITHIN
    return BELOW if delta < 0 else ABOVE


def compare_accuracy(
    eval_metrics: dict | None, train_metrics: dict | None = None, tolerance: Tolerance | None = None
) -> AccuracyComparison:
    """Top-1 / top-5 against the published 78.208 / 93.820 with the verdict rule of the module docstring."""
    tolerance = tolerance or Tolerance()
    problems = comparability_problems(eval_metrics, train_metrics, tolerance)
    eval_metrics = eval_metrics or {}
    rows = []
    for name, published, tol in (("top1", PUBLISHED_TOP1, tolerance.top1), ("top5", PUBLISHED_TOP5, tolerance.top5)):
        measured = eval_metrics.get(name)
        measured = float(measured) if _is_number(measured) else None
        if problems or measured is None:
            verdict = NOT_COMPARABLE
        else:
            verdict = metric_verdict(measured - published, tol)
        rows.append(MetricComparison(name, published, measured, verdict, tol))
    if problems:
        return AccuracyComparison(NOT_COMPARABLE, tuple(problems), tuple(rows))
    verdicts = {row.verdict for row in rows}
    overall = BELOW if BELOW in verdicts else ABOVE if ABOVE in verdicts else REPRODUCED
    return AccuracyComparison(overall, (), tuple(rows))


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
