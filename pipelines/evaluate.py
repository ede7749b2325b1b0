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

Sharded over `distributed.nproc_per_node` processes of this node (torchrun, the training's
launcher; exact counts whatever the world size), with the loader workers, pin_memory,
precision (`train.cpu_autocast` on CPU) and channels_last of the `train` section: the model
is scored as it was trained. One process: in this process, no torchrun.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.data import eval_resize_size
from lambda_repro.distributed import init_distributed
from lambda_repro.evaluation.worker import MODULE, EvaluationJob, score_job
from lambda_repro.metrics_files import info_path, write_metrics
from lambda_repro.models import CheckpointError
from lambda_repro.process_setup import configure_process
from lambda_repro.tracking import RunTracker, git_tags, resolve_tracking_uri
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, read_run_pointer
from lambda_repro.training import torchrun_command
from lambda_repro.training.formulations import MEASURED, choices_text
from lambda_repro.training.launch import device_count_problem
from lambda_repro.training.recipe import model_options
from pipelines._stage import ParamError, stage

METRICS_NAME = "eval.json"
METRIC_KEYS = ("top1", "top5", "loss")  # eval.json; the rest (what was scored, how) goes to eval_info.json


def evaluation_job(params: dict) -> EvaluationJob:
    settings, train = params["evaluate"], params["train"]
    return EvaluationJob(
        checkpoint=settings["checkpoint"] or train["checkpoint"],
        model=params["model"]["name"],
        model_kwargs=model_options(params["model"]),
        measure_formulations=params["model"]["lambda_implementation"] == MEASURED,
        manifest=params["data"]["manifest"],
        image_size=settings["image_size"],
        batch_size=settings["batch_size"],
        workers=train["workers"],
        precision=train["precision"],
        cpu_autocast=train["cpu_autocast"],
        channels_last=train["channels_last"],
        pin_memory=train["pin_memory"],
        backend=params["distributed"]["backend"],
    )


def run_sharded(job: EvaluationJob, nproc: int) -> dict:
    """The job over ``nproc`` torchrun processes of this node; rank 0's summed scores."""
    with tempfile.TemporaryDirectory(prefix="lambda-repro-evaluate-") as tmp:
        job_path, output = Path(tmp) / "job.json", Path(tmp) / "scores.json"
        job_path.write_text(job.to_json(), encoding="utf-8")
        command = torchrun_command(job_path, nproc_per_node=nproc, module=MODULE, extra_args=("--output", str(output)))
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        returncode = subprocess.run(command, env=env).returncode
        if returncode != 0 or not output.is_file():
            raise RuntimeError(f"evaluation workers failed (torchrun exit code {returncode}; see their errors above)")
        return json.loads(output.read_text(encoding="utf-8"))


def score(params: dict) -> dict:
    job = evaluation_job(params)
    nproc = params["distributed"]["nproc_per_node"]
    problem = device_count_problem(nproc)
    if problem:
        raise ParamError(problem)
    if nproc == 1:  # in this process, the stage's own: its math mode is set here
        context = init_distributed(job.backend)
        configure_process(context.device)  # math mode and heap, as the workers set them
        scores = score_job(job, context)
    else:
        scores = run_sharded(job, nproc)
    if "error" in scores:
        raise CheckpointError(scores["error"])
    arch = scores.get("arch")
    if arch is not None and arch != job.model:
        raise ParamError(f"model.name: {job.checkpoint} holds a {arch}, not a {job.model}")
    return {
        "top1": round(scores["top1"], 4),
        "top5": round(scores["top5"], 4),
        # JSON has no NaN: a diverged model's loss is recorded as null. Four decimals, as train.json's loss.
        "loss": round(scores["loss"], 4) if math.isfinite(scores["loss"]) else None,
        "images": scores["images"],
        "resolution": job.image_size,
        "resize": eval_resize_size(job.image_size),
        "checkpoint": str(job.checkpoint),
        "model": job.model,
        "dataset": scores["dataset"],
        "dataset_name": scores["dataset_name"],
        "classes": scores["classes"],
        "epochs_trained": scores["epochs_trained"],
        "health": scores["health"],
        "world_size": scores["world_size"],
        "lambda_formulations": scores["lambda_formulations"],
        "lambda_formulations_measured": scores["lambda_formulations_measured"],
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
        tracker.log_params(evaluation_formulation_params(metrics))
        tracker.log_params(health_params(health))
        tracker.set_tags(
            {"dataset.name": metrics["dataset_name"], "dataset.kind": metrics["dataset"], "health.ok": health["ok"]}
        )
        if not health["ok"]:
            tracker.log_event("unhealthy_eval", "; ".join(health["problems"]))
        tracker.log_artifact(metrics_dir / METRICS_NAME, "metrics")
        tracker.log_artifact(info_path(metrics_dir / METRICS_NAME), "metrics")


def evaluation_formulation_params(metrics: dict) -> dict[str, str | bool]:
    """MLflow params of the lambda formulations the evaluation ran (``{}`` for a model without lambda layers)."""
    choices = metrics["lambda_formulations"]
    if not choices:
        return {}
    return {
        "eval.lambda_formulations": choices_text(choices),
        "eval.lambda_formulations_measured": metrics["lambda_formulations_measured"],
    }


def health_params(health: dict) -> dict[str, float | bool]:
    """MLflow params of the health check: counts, and the largest |activation| overall and per stage.

    Params, not metrics: single values as metrics would be drawn as one-point charts above the
    learning curves; a failed check is also the ``health.ok`` tag and an ``unhealthy_eval`` event.
    """
    stages = {k: v for k, v in health["max_abs_activation"].items() if v is not None}
    params = {
        "eval.health.ok": bool(health["ok"]),
        "eval.health.nonfinite_logits": health["nonfinite_logits"],
        "eval.health.nonfinite_loss": health["nonfinite_loss"],
    }
    if stages:
        params["eval.health.max_abs_activation"] = f"{max(stages.values()):.4g}"
    params.update({f"eval.health.max_abs_activation.{stage}": f"{value:.4g}" for stage, value in stages.items()})
    return params


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
