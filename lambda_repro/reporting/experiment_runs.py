"""The runs of an experiment set, read back from MLflow as :class:`~lambda_repro.reporting.variance.RunScore`.

A set is the finished runs that carry a ``dvc.baseline_rev`` tag (the commit ``dvc exp run``
started from) equal to the one asked for, or every finished run of the experiment.
"""

from __future__ import annotations

import math

from lambda_repro.data import eval_resize_size
from lambda_repro.reporting.variance import RunScore
from lambda_repro.tracking.run_naming import DVC_BASELINE_TAG


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def runs_from_mlflow(tracking_uri: str, experiment: str, baseline_rev: str | None = None) -> list[RunScore]:
    """Evaluated, finished runs, oldest first; each with eval.json's keys rebuilt from its params and tags."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    query = "attributes.status = 'FINISHED'"
    if baseline_rev:
        query += f" and tags.`{DVC_BASELINE_TAG}` = '{baseline_rev}'"
    frame = mlflow.search_runs(experiment_names=[experiment], filter_string=query, order_by=["start_time ASC"])
    runs = []
    for _, row in frame.iterrows():
        top1 = _number(row.get("params.eval.top1"))
        if top1 is None:  # not evaluated (yet)
            continue
        resolution = _number(row.get("params.evaluate.image_size"))
        epochs = _number(row.get("params.train.epochs"))
        images = _number(row.get("params.eval.images"))
        scores = {
            "top1": top1,
            "top5": _number(row.get("params.eval.top5")),
            "model": row.get("params.model.name"),
            # The kind ("imagenet", "fashion_mnist") decides comparability; the `dataset` tag is the display name.
            "dataset": row.get("tags.dataset.kind") or row.get("tags.dataset"),
            "images": int(images) if images is not None else None,
            "resolution": int(resolution) if resolution is not None else None,
            "resize": eval_resize_size(int(resolution)) if resolution is not None else None,
            "epochs_trained": int(epochs) if epochs is not None else None,
        }
        seed = _number(row.get("params.seed"))
        runs.append(RunScore(str(scores["model"]), int(seed or 0), scores, str(row.get("tags.mlflow.runName", ""))))
    return runs
