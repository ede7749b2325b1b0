"""The runs of a recipe over seeds and models, read back from MLflow as :class:`~.variance.RunScore`.

An experiment set (``dvc exp run -S seed=... -S model.name=...``) leaves one MLflow run per
experiment. Only finished, evaluated runs of one recipe (:mod:`~lambda_repro.reporting.recipe_key`)
are pooled. Every MLflow call here is made without retries and gives up after a few seconds
toward an HTTP server, so an unreachable store costs the report seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lambda_repro.data import eval_resize_size
from lambda_repro.reporting.recipe_key import COMMIT_TAG, RecipeKey, key_of_row
from lambda_repro.reporting.recipe_key import text_value as _text
from lambda_repro.reporting.variance import RunScore
from lambda_repro.tracking.http_timeouts import short_http_requests
from lambda_repro.tracking.pipeline_run import RunRef


@dataclass(frozen=True)
class RecipeRuns:
    """The evaluated runs of one recipe, oldest first."""

    key: RecipeKey
    runs: list[RunScore]


def search_finished_runs(tracking_uri: str, experiment: str, commit: str | None = None) -> pd.DataFrame:
    """``mlflow.search_runs`` of the finished runs (of ``commit`` when given), oldest first; raises when unreachable."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    query = "attributes.status = 'FINISHED'"
    if commit:
        query += f" and tags.`{COMMIT_TAG}` = '{commit}'"
    with short_http_requests(tracking_uri):
        return mlflow.search_runs(experiment_names=[experiment], filter_string=query, order_by=["start_time ASC"])


def run_score(row: pd.Series) -> RunScore | None:
    """One row of ``search_runs`` with eval.json's keys rebuilt from its params and tags; None when not evaluated."""
    top1 = _number(row.get("params.eval.top1"))
    seed = _number(row.get("params.seed"))
    if seed is None:
        seed = _number(row.get("tags.seed"))
    model = _text(row.get("params.model.name")) or _text(row.get("tags.model"))
    if top1 is None or seed is None or model is None:  # not evaluated (yet), or not a pipeline run
        return None
    resolution = _number(row.get("params.evaluate.image_size"))
    epochs = _number(row.get("params.train.epochs"))
    images = _number(row.get("params.eval.images"))
    scores = {
        "top1": top1,
        "top5": _number(row.get("params.eval.top5")),
        "model": model,
        # The kind ("imagenet", "fashion_mnist") decides comparability; the name is what a reason shows.
        "dataset": _text(row.get("tags.dataset.kind")) or _text(row.get("tags.dataset")),
        "dataset_name": _text(row.get("tags.dataset.name")),
        "images": int(images) if images is not None else None,
        "resolution": int(resolution) if resolution is not None else None,
        "resize": eval_resize_size(int(resolution)) if resolution is not None else None,
        "epochs_trained": int(epochs) if epochs is not None else None,
    }
    name = _text(row.get("tags.mlflow.runName")) or ""
    return RunScore(model, int(seed), scores, name, _text(row.get("run_id")) or "")


def group_by_recipe(frame: pd.DataFrame, with_commit: bool = True) -> list[RecipeRuns]:
    """The evaluated runs of ``frame`` (oldest first) by recipe; the group with the latest run first."""
    groups: dict[RecipeKey, list[RunScore]] = {}
    for _, row in frame.iterrows():
        score = run_score(row)
        if score is not None:
            groups.setdefault(key_of_row(row, with_commit), []).append(score)
    position = {run_id: i for i, run_id in enumerate(frame["run_id"])} if "run_id" in frame else {}
    ordered = sorted(
        groups.items(), key=lambda item: max(position.get(run.run_id, -1) for run in item[1]), reverse=True
    )
    return [RecipeRuns(key, runs) for key, runs in ordered]


def runs_of_recipe(ref: RunRef, current: pd.DataFrame) -> tuple[list[RunScore], str | None]:
    """The evaluated runs of the recipe of ``current`` (the pipeline's run, one ``search_runs`` row), itself included.

    Returns the runs oldest first (the current one wherever its start time puts it), and a
    problem text when the other runs could not be looked up (then only the current run).
    """
    row = current.iloc[0]
    key = key_of_row(row)
    mine = [score] if (score := run_score(row)) is not None else []
    commit = key.value(COMMIT_TAG)
    if not commit or commit == "unknown":
        return mine, "the run's commit is unknown: runs of other code could not be told apart, none pooled"
    try:
        frame = search_finished_runs(ref.tracking_uri, ref.experiment, commit)
    except Exception as err:  # an unreachable store only costs the other seeds
        return mine, f"runs of this recipe not looked up (MLflow: {type(err).__name__}: {err})"
    if frame.empty or "run_id" not in frame:
        return mine, None
    both = pd.concat([frame[frame["run_id"] != ref.run_id], current], ignore_index=True)
    if "start_time" in both:
        both = both.sort_values("start_time", kind="stable")
    runs = [score for _, r in both.iterrows() if key_of_row(r) == key and (score := run_score(r)) is not None]
    return runs, None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
