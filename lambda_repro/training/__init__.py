"""Distributed training of the published recipe: SGD + momentum (or AdamW), cosine decay, label smoothing, resumable.

``pipelines/train.py`` launches :mod:`lambda_repro.training.worker` with torchrun
(:func:`torchrun_command`); each worker runs :func:`train`.
"""

from lambda_repro.training.launch import torchrun_command
from lambda_repro.training.recipe import TrainConfig
from lambda_repro.training.schedule import learning_rate
from lambda_repro.training.trainer import NonFiniteLossError, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "learning_rate", "torchrun_command", "train"]
