"""Model family: Lambda-ResNets (published architecture), the ResNet-50 baseline, checkpoints."""

from lambda_repro.models import lambda_resnet, resnet  # noqa: F401  (registers the models)
from lambda_repro.models._registry import create_model, list_models, options_for, register_model, supported_options
from lambda_repro.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from lambda_repro.models.lambda_choices import benchmark_formulations, formulation_choices, pin_formulations
from lambda_repro.models.lambda_layer import LambdaLayer
from lambda_repro.models.lambda_resnet import LambdaResNet

__all__ = [
    "CheckpointError",
    "LambdaLayer",
    "LambdaResNet",
    "benchmark_formulations",
    "create_model",
    "formulation_choices",
    "list_models",
    "load_checkpoint",
    "model_from_checkpoint",
    "options_for",
    "pin_formulations",
    "read_checkpoint",
    "register_model",
    "save_checkpoint",
    "supported_options",
]
