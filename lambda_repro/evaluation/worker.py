"""One evaluation process, as torchrun starts it: ``python -m lambda_repro.evaluation.worker --config job.json
--output scores.json``.

Every rank scores its own shard of the val split (:func:`lambda_repro.evaluation.evaluate`:
exact counts, no image twice) with the loader workers, autocast and channels_last the job
names; rank 0 writes the summed scores. A user error (wrong checkpoint, classes, model) is
written to the output as ``{"error": ...}`` and the worker exits 0: torchrun must not
restart a group for what a restart cannot fix, and the stage turns it into one line.
The launch is the training's (:func:`lambda_repro.training.torchrun_command`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lambda_repro.data import DataError, build_dataset, eval_transform, load_manifest
from lambda_repro.data.manifest import dataset_name
from lambda_repro.distributed import DistributedContext, init_distributed, shutdown_distributed
from lambda_repro.evaluation.evaluate import evaluate
from lambda_repro.evaluation.model_for_checkpoint import model_for_checkpoint
from lambda_repro.models import CheckpointError, formulation_choices
from lambda_repro.process_setup import configure_process
from lambda_repro.training.device_options import resolve_channels_last, resolve_pin_memory, resolve_precision
from lambda_repro.training.formulations import agree_on_formulations

MODULE = "lambda_repro.evaluation.worker"


@dataclass
class EvaluationJob:
    """What the evaluate stage asks every rank to do."""

    checkpoint: str
    model: str
    manifest: str
    image_size: int
    batch_size: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    measure_formulations: bool = False  # model.lambda_implementation: measured (rank 0 times them for inference)
    workers: int = 0
    precision: str = "fp32"
    cpu_autocast: bool = False
    channels_last: str | bool = "auto"
    pin_memory: str | bool = "auto"
    backend: str = "auto"
    progress: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvaluationJob:
        return cls(**json.loads(text))


def score_job(job: EvaluationJob, context: DistributedContext) -> dict[str, Any]:
    """``{"top1", "top5", "loss", "images", "epochs_trained", "arch", "world_size", ...}`` over the whole val split."""
    device = context.device
    manifest = load_manifest(job.manifest)
    val_set = build_dataset(manifest, "val", eval_transform(job.image_size))
    model, loaded = model_for_checkpoint(job.checkpoint, job.model, manifest["classes"], **job.model_kwargs)
    channels_last = resolve_channels_last(job.channels_last, device)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast_dtype = resolve_precision(job.precision, device, job.cpu_autocast)
    # Measured for inference on the eval batch's shape: the fastest formulation may differ from training's.
    agree_on_formulations(
        model,
        context,
        recorded=None,
        measure=job.measure_formulations,
        batch_shape=(job.batch_size, 3, job.image_size, job.image_size),
        training=False,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
    )
    scores = evaluate(
        model,
        val_set,
        batch_size=job.batch_size,
        device=device,
        context=context,
        workers=job.workers,
        pin_memory=resolve_pin_memory(job.pin_memory, device),
        channels_last=channels_last,
        autocast_dtype=autocast_dtype,
        progress=job.progress,
        description="evaluate",
        health=True,
    )
    return {
        **scores,
        "epochs_trained": loaded.get("epoch"),
        "arch": loaded.get("arch"),
        "dataset": manifest["kind"],
        "dataset_name": dataset_name(manifest),
        "classes": len(manifest["classes"]),
        "world_size": context.world_size,
        "autocast": str(autocast_dtype),
        "channels_last": channels_last,
        # What each lambda layer ran (pinned when measured), and whether it was measured here.
        "lambda_formulations": formulation_choices(model),
        "lambda_formulations_measured": job.measure_formulations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a JSON file holding the EvaluationJob")
    parser.add_argument("--output", required=True, type=Path, help="where rank 0 writes the scores (JSON)")
    args = parser.parse_args(argv)
    job = EvaluationJob.from_json(args.config.read_text(encoding="utf-8"))
    context = init_distributed(job.backend)
    configure_process(context.device)  # this process is ours: math mode and heap
    try:
        try:
            result = score_job(job, context)
        except (CheckpointError, DataError) as err:
            result = {"error": str(err)}
        if context.is_main:
            args.output.write_text(json.dumps(result), encoding="utf-8")
    finally:
        shutdown_distributed(context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
