"""Top-k accuracy of a model on a labelled dataset, alone or sharded over a process group; its numerical health."""

from lambda_repro.evaluation.accuracy import TopKCounts, topk_correct
from lambda_repro.evaluation.evaluate import evaluate, shard_indices
from lambda_repro.evaluation.health import MAX_ABS_ACTIVATION, ActivationMonitor, HealthCounts, stage_modules
from lambda_repro.evaluation.model_for_checkpoint import model_for_checkpoint

__all__ = [
    "MAX_ABS_ACTIVATION",
    "ActivationMonitor",
    "HealthCounts",
    "stage_modules",
    "TopKCounts",
    "evaluate",
    "model_for_checkpoint",
    "shard_indices",
    "topk_correct",
]
