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
protocol) after at least ``min_epochs`` epochs (the published recipe trains 130). Any other
dataset (synthetic, Fashion-MNIST, an image folder) is "not ImageNet". Top-5 means the
published figure's thing only over ImageNet's 1000 classes: with another number of classes
(top-5 of 10 classes is half of them) its row says so and is never compared.

The numerical health of the evaluation (non-finite logits or loss, activations out of
range: ``eval.json``'s ``health``) is judged apart from accuracy by :func:`health_verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambda_repro.published import (
    PUBLISHED_MACS_224,
    PUBLISHED_MODEL,
    PUBLISHED_PARAMS,
    PUBLISHED_TOP1,
    PUBLISHED_TOP5,
)

if TYPE_CHECKING:
    from lambda_repro.reporting.variance import Interval

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
IMAGENET_CLASSES = 1000
DATASET_DESCRIPTIONS = {"synthetic": "the embedded synthetic dataset", "imagefolder": "an image folder"}

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
HEALTH_UNKNOWN = "not checked"


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
    note: str | None = None  # why this row is not compared when the others might be
    interval: Interval | None = None  # over the runs of the recipe (then ``measured`` is their mean)

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.published


@dataclass(frozen=True)
class AccuracyComparison:
    verdict: str
    reasons: tuple[str, ...] = ()
    metrics: tuple[MetricComparison, ...] = field(default_factory=tuple)
    runs: int = 1  # how many runs (seeds) of the model the verdict rests on
    seeds: tuple[int, ...] = ()

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
        problems.append(f"evaluated on {describe_dataset(eval_metrics)}, not ImageNet")
    else:
        images = eval_metrics.get("images")
        if _is_number(images) and images < IMAGENET_VAL_IMAGES:
            problems.append(f"evaluated on {int(images):,} of the {IMAGENET_VAL_IMAGES:,} ImageNet validation images")
    classes = eval_metrics.get("classes")
    if _is_number(classes) and classes != IMAGENET_CLASSES:
        problems.append(f"{int(classes)} classes, the published figures are over ImageNet's {IMAGENET_CLASSES}")
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


def describe_dataset(eval_metrics: dict) -> str:
    """``Fashion-MNIST (fashion_mnist)``, ``the embedded synthetic dataset``, ...: what a reason calls the data."""
    kind, name = eval_metrics.get("dataset"), eval_metrics.get("dataset_name")
    if kind in DATASET_DESCRIPTIONS and (not name or name == kind):
        return DATASET_DESCRIPTIONS[kind]
    if name and kind:
        return f"{name} ({DATASET_DESCRIPTIONS.get(kind, kind)})"
    return f"dataset {name or kind or 'unknown'}"


def top5_note(eval_metrics: dict | None) -> str | None:
    """Why top-5 cannot be set against the published figure whatever else holds; None when it can."""
    classes = (eval_metrics or {}).get("classes")
    if _is_number(classes) and classes != IMAGENET_CLASSES:
        return f"top-5 of {int(classes)} classes is not the {IMAGENET_CLASSES}-class top-5"
    return None


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
        note = top5_note(eval_metrics) if name == "top5" else None
        if problems or measured is None or note:
            verdict = NOT_COMPARABLE
        else:
            verdict = metric_verdict(measured - published, tol)
        rows.append(MetricComparison(name, published, measured, verdict, tol, note))
    if problems:
        return AccuracyComparison(NOT_COMPARABLE, tuple(problems), tuple(rows))
    verdicts = {row.verdict for row in rows}
    overall = BELOW if BELOW in verdicts else ABOVE if ABOVE in verdicts else REPRODUCED
    return AccuracyComparison(overall, (), tuple(rows))


@dataclass(frozen=True)
class HealthVerdict:
    """``healthy`` / ``unhealthy`` / ``not checked``, with a line per finding."""

    verdict: str
    lines: tuple[str, ...] = ()


def health_verdict(eval_metrics: dict | None) -> HealthVerdict:
    """The evaluation's numerical health from ``eval.json``: non-finite logits / loss, activations out of range."""
    eval_metrics = eval_metrics or {}
    health = eval_metrics.get("health")
    loss = eval_metrics.get("loss", 0.0)
    if not isinstance(health, dict):
        lines = ["eval.json has no health check (written before it existed: rerun dvc repro evaluate)"]
        if eval_metrics and not _is_number(loss):
            lines.insert(0, "the eval loss is not a finite number (null in eval.json)")
        return HealthVerdict(UNHEALTHY if len(lines) > 1 else HEALTH_UNKNOWN, tuple(lines))
    lines = list(health.get("problems") or [])
    if not _is_number(loss) and not any("loss" in line for line in lines):
        lines.insert(0, "the eval loss is not a finite number (null in eval.json)")
    activations = {k: v for k, v in (health.get("max_abs_activation") or {}).items() if _is_number(v)}
    if activations:
        worst = max(activations, key=activations.get)
        limit = health.get("max_abs_activation_limit")
        lines.append(
            f"largest |activation| {activations[worst]:.3g} at {worst}"
            + (f" (limit {limit:g})" if _is_number(limit) else "")
        )
    ok = bool(health.get("ok")) and _is_number(loss)
    return HealthVerdict(HEALTHY if ok else UNHEALTHY, tuple(lines))


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
