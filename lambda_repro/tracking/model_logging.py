"""The trained model as an MLflow model (``mlflow.pytorch.log_model``): registrable and servable.

Pickled (with ``lambda_repro`` as code), a signature and an input example at the training resolution, the explicit pip
requirements (no inference, which would import and run the model again) and the
``lambda_repro`` package as code, so that ``mlflow.pytorch.load_model`` and ``mlflow models
serve`` work without this checkout on the path.
"""

from __future__ import annotations

import contextlib
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lambda_repro.tracking.pipeline_run import RunRef

MODEL_ARTIFACT = "model"
_REQUIREMENTS = ("torch", "torchvision", "numpy")


def pip_requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def input_example(image_size: int, seed: int = 0) -> np.ndarray:
    """One normalised-looking image batch ``(1, 3, S, S)`` float32 (what the model takes after eval_transform)."""
    return np.random.default_rng(seed).standard_normal((1, 3, image_size, image_size)).astype(np.float32)


def log_pytorch_model(ref: RunRef, model: nn.Module, image_size: int) -> str:
    """Log ``model`` (put in eval mode) into run ``ref`` as ``model``; returns the model URI ``runs:/<id>/model``."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    import lambda_repro

    model = model.eval().cpu()
    example = input_example(image_size)
    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, logits)
    package_dir = Path(lambda_repro.__file__).resolve().parent
    mlflow.set_tracking_uri(ref.tracking_uri)
    with mlflow.start_run(run_id=ref.run_id), _quiet("mlflow.pytorch"):
        mlflow.pytorch.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            code_paths=[str(package_dir)],
            # A pickled module with the package as code, not MLflow's torch.export default ("pt2"): the
            # export traces the whole model, untested here on the lambda layers' custom autograd functions.
            serialization_format="pickle",
        )
    return f"runs:/{ref.run_id}/{MODEL_ARTIFACT}"


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silence a logger's warnings for a block: MLflow warns about pickling at every save, the
    format chosen above on purpose, and the warning would be the training stage's last line."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
