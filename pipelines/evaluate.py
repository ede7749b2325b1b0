"""DVC stage `evaluate`: top-1 / top-5 of a checkpoint on the val split, with the standard preprocessing.

Reads the `model`, `evaluate` and `tracking` sections (and `data.manifest`). The checkpoint is
`evaluate.checkpoint`: the trained one by default, or any other file, the published one
included. Preprocessing: resize the short side to round(image_size * 256 / 224), center crop
image_size (256 / 224 at the published resolution). Writes `metrics/eval.json` and logs
into the pipeline's MLflow run (the one in `metrics/mlflow_run.json`, else a new run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if not __package__:
    # Run as `python pipelines/evaluate.py`: import from the project root instead of pipelines/, where a
    # stage named like a standard-library module (profile.py) would shadow it for torch.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from lambda_repro.data import DataError, build_dataset, eval_resize_size, eval_transform, load_manifest
from lambda_repro.evaluation import evaluate, model_for_checkpoint
from lambda_repro.models import CheckpointError
from lambda_repro.tracking import RunTracker, git_tags, resolve_tracking_uri
from pipelines._params import ParamError, fail, load_checked, model_kwargs

METRICS_PATH = Path("metrics/eval.json")
RUN_POINTER = Path("metrics/mlflow_run.json")


def pipeline_run(tracking: dict) -> tuple[str, str | None]:
    """The MLflow store and run the train stage opened (``run_id`` None when there is none)."""
    uri = resolve_tracking_uri(tracking["uri"])
    if RUN_POINTER.is_file():
        pointer = json.loads(RUN_POINTER.read_text(encoding="utf-8"))
        return resolve_tracking_uri(pointer["tracking_uri"]), pointer.get("run_id")
    return uri, None


def run(params: dict) -> dict:
    settings = params["evaluate"]
    checkpoint = settings["checkpoint"] or params["train"]["checkpoint"]
    manifest = load_manifest(params["data"]["manifest"])
    image_size = settings["image_size"]
    val_set = build_dataset(manifest, "val", eval_transform(image_size))
    model, loaded = model_for_checkpoint(
        checkpoint, params["model"]["name"], manifest["classes"], **model_kwargs(params["model"])
    )
    arch = loaded.get("arch")
    if arch is not None and arch != params["model"]["name"]:
        raise ParamError(f"model.name: {checkpoint} holds a {arch}, not a {params['model']['name']}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    scores = evaluate(model, val_set, batch_size=settings["batch_size"], device=device, description="evaluate")
    return {
        "top1": round(scores["top1"], 4),
        "top5": round(scores["top5"], 4),
        # JSON has no NaN: a diverged model's loss is recorded as null.
        "loss": round(scores["loss"], 6) if math.isfinite(scores["loss"]) else None,
        "images": scores["images"],
        "resolution": image_size,
        "resize": eval_resize_size(image_size),
        "checkpoint": str(checkpoint),
        "model": params["model"]["name"],
        "dataset": manifest["kind"],
        "epochs_trained": loaded.get("epoch"),
    }


def log_to_mlflow(tracking: dict, metrics: dict) -> None:
    uri, run_id = pipeline_run(tracking)
    tracker = RunTracker(
        uri,
        tracking["experiment"],
        tags={**git_tags(), "pipeline.stage": "evaluate"} if run_id is None else None,
        system_metrics=False,  # seconds of work; the train stage samples the system
        run_id=run_id,
    )
    with tracker:
        scores = {"eval_top1": metrics["top1"], "eval_top5": metrics["top5"], "eval_loss": metrics["loss"]}
        tracker.log_metrics({k: v for k, v in scores.items() if v is not None})
        tracker.log_params({"evaluate.checkpoint_used": metrics["checkpoint"]})
        tracker.log_artifact(METRICS_PATH, "metrics")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        params = load_checked(args.params, "evaluate")
        metrics = run(params)
    except (ParamError, CheckpointError, DataError) as err:
        return fail("evaluate", str(err))
    METRICS_PATH.parent.mkdir(parents=True, exist_ok=True)
    METRICS_PATH.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(
        f"evaluate: {metrics['model']} from {metrics['checkpoint']} on "
        f"{metrics['images']} {metrics['dataset']} val images "
        f"(resize {metrics['resize']}, crop {metrics['resolution']}): top-1 {metrics['top1']:.2f}%, "
        f"top-5 {metrics['top5']:.2f}%"
    )
    log_to_mlflow(params["tracking"], metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
