"""Build the model a checkpoint was trained as, load it, and check that its classes are the dataset's."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from lambda_repro.models import CheckpointError, create_model, read_checkpoint
from lambda_repro.models.checkpoint import check_state_dict, strip_wrapper_prefixes


def _num_classes(state_dict: dict) -> int:
    weight = state_dict.get("fc.weight")
    if weight is None:
        raise CheckpointError("checkpoint has no classifier weight 'fc.weight'; cannot tell its number of classes")
    return int(weight.shape[0])


def model_for_checkpoint(
    path: str | os.PathLike, model_name: str, classes: list[str], **model_kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """Return ``(model, checkpoint)`` with the weights of ``path`` loaded into ``create_model(model_name)``.

    Our checkpoints record the class names they were trained on; they must equal
    ``classes`` (the dataset's, in label order). Files without them (the published
    checkpoint) are taken to use the ImageNet convention, labels in sorted class-name order,
    and must have exactly ``len(classes)`` outputs.
    """
    checkpoint = read_checkpoint(path)
    state_dict = strip_wrapper_prefixes(checkpoint["state_dict"])
    num_classes = _num_classes(state_dict)
    trained_on = checkpoint.get("classes")
    if trained_on is not None and list(trained_on) != list(classes):
        raise CheckpointError(
            f"{path} was trained on {len(trained_on)} classes that differ from the dataset's {len(classes)} "
            f"(first: {list(trained_on)[:3]} vs {list(classes)[:3]})"
        )
    if num_classes != len(classes):
        raise CheckpointError(f"{path} has {num_classes} outputs but the dataset has {len(classes)} classes")
    model = create_model(model_name, num_classes=num_classes, **model_kwargs)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    checkpoint["state_dict"] = state_dict
    return model, checkpoint
