"""DVC stage `evaluate`: top-1 / top-5 of a checkpoint on the val split, with the standard preprocessing.

Reads the `model`, `evaluate` and `tracking` sections (and `data.manifest`). The checkpoint is
`evaluate.checkpoint`: the trained one by default, or any other file, the published one
included. Preprocessing: resize the short side to round(image_size * 256 / 224), center crop
image_size (256 / 224 at the published resolution). Writes `eval.json` (top-1, top-5, loss) and
`eval_info.json` (what was scored and how, the dataset's kind and name, the model's numerical
health: non-finite logits or loss, per-stage max |activation|) into `--metrics-dir`, and logs
into the pipeline's MLflow run (the one its `mlflow_run.json` names, else a new run): the
scores as params, the health counts as metrics, the tags `dataset.name`, `dataset.kind`,
`health.ok`, and an `unhealthy_eval` event when the health check fails.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

import torch

from lambda_repro.data import build_dataset, eval_resize_size, eval_transform, load_manifest
from lambda_repro.data.manifest import dataset_name
from lambda_repro.evaluation import evaluate, model_for_checkpoint
from lambda_repro.metrics_files import info_path, write_metrics
from lambda_repro.tracking import RunTracker, git_tags, resolve_tracking_uri
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, read_run_pointer
from lambda_repro.training.recipe import model_options
from pipelines._stage import ParamError, stage

METRICS_NAME = "eval.json"
METRIC_KEYS = ("top1", "top5", "loss")  # eval.json; the rest (what was scored, how) goes to eval_info.json


def score(params: dict) -> dict:
    settings = params["evaluate"]
    checkpoint = settings["checkpoint"] or params["train"]["checkpoint"]
    manifest = load_manifest(params["data"]["manifest"])
    image_size = settings["image_size"]
    val_set = build_dataset(manifest, "val", eval_transform(image_size))
    model, loaded = model_for_checkpoint(
        checkpoint, params["model"]["name"], manifest["classes"], **model_options(params["model"])
    )
    arch = loaded.get("arch")
    if arch is not None and arch != params["model"]["name"]:
        raise ParamError(f"model.name: {checkpoint} holds a {arch}, not a {params['model']['name']}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    scores = evaluate(
        model, val_set, batch_size=settings["batch_size"], device=device, description="evaluate", health=True
    )
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
        "dataset_name": dataset_name(manifest),
        "classes": len(manifest["classes"]),
        "epochs_trained": loaded.get("epoch"),
        "health": scores["health"],
    }


def log_to_mlflow(tracking: dict, metrics: dict, metrics_dir: Path) -> None:
    """Into the pipeline's run (named by the train stage), else a new run of its own."""
    ref = read_run_pointer(metrics_dir / RUN_POINTER_NAME)
    uri = resolve_tracking_uri(ref.tracking_uri if ref else tracking["uri"])
    run_id = ref.run_id if ref else None
    tracker = RunTracker(
        uri,
        tracking["experiment"],
        tags={**git_tags(), "pipeline.stage": "evaluate"} if run_id is None else None,
        system_metrics=False,  # seconds of work; the train stage samples the system
        run_id=run_id,
    )
    health = metrics["health"]
    with tracker:
        # Params, not metrics: MLflow draws every metric as a chart, and one value would push the curves down.
        scores = {f"eval.{key}": metrics[key] for key in (*METRIC_KEYS, "images")}
        tracker.log_params({**scores, "evaluate.checkpoint_used": metrics["checkpoint"]})
        # The health check's counts stay metrics (i14): a failed check is worth a chart.
        tracker.log_metrics({k: v for k, v in health_metrics(health).items() if v is not None})
        tracker.set_tags(
            {"dataset.name": metrics["dataset_name"], "dataset.kind": metrics["dataset"], "health.ok": health["ok"]}
        )
        if not health["ok"]:
            tracker.log_event("unhealthy_eval", "; ".join(health["problems"]))
        tracker.log_artifact(metrics_dir / METRICS_NAME, "metrics")
        tracker.log_artifact(info_path(metrics_dir / METRICS_NAME), "metrics")


def health_metrics(health: dict) -> dict[str, float]:
    """MLflow metrics of the health check: counts, and the largest |activation| overall and per stage."""
    stages = {k: v for k, v in health["max_abs_activation"].items() if v is not None}
    metrics = {
        "eval_health_ok": float(health["ok"]),
        "eval_nonfinite_logits": float(health["nonfinite_logits"]),
        "eval_nonfinite_loss": float(health["nonfinite_loss"]),
    }
    if stages:
        metrics["eval_max_abs_activation"] = max(stages.values())
    metrics.update({f"eval_max_abs_activation/{stage}": value for stage, value in stages.items()})
    return metrics


def run(params: dict, args) -> int:
    metrics = score(params)
    metrics_dir = Path(args.metrics_dir)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    numbers = {key: metrics[key] for key in METRIC_KEYS}
    write_metrics(metrics_dir / METRICS_NAME, numbers, info={k: v for k, v in metrics.items() if k not in numbers})
    print(
        f"evaluate: {metrics['model']} from {metrics['checkpoint']} on "
        f"{metrics['images']} {metrics['dataset_name']} val images "
        f"(resize {metrics['resize']}, crop {metrics['resolution']}): top-1 {metrics['top1']:.2f}%, "
        f"top-5 {metrics['top5']:.2f}%"
    )
    for problem in metrics["health"]["problems"]:
        print(f"evaluate: warning: numerical health: {problem} ({METRICS_NAME}: health)", file=sys.stderr)
    log_to_mlflow(params["tracking"], metrics, metrics_dir)
    return 0


main = stage("evaluate", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
