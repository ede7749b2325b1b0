"""Which formulation each lambda layer runs with: measured once (``model.lambda_implementation: measured``) in the
mode the process runs (a training step, or an evaluation forward), recorded (checkpoint, MLflow, metrics), and, in
training, pinned again on resume so that a resumed run computes the same bits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lambda_repro.distributed import DistributedContext, broadcast_object
from lambda_repro.models import benchmark_formulations, formulation_choices, pin_formulations

# The value of model.lambda_implementation that asks for measurement (the others name a layer setting).
MEASURED = "measured"


def measure_formulations(
    model: nn.Module,
    batch_shape: tuple[int, ...],
    device: torch.device,
    *,
    training: bool = True,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, str]:
    """Time the exact formulations of every lambda layer on one batch's shape; ``{layer: fastest}``.

    ``training``: a training step's forward and backward (train mode), else an evaluation forward (eval mode, no
    grad), whose fastest formulation may differ. Runs on a copy, so the model's BatchNorm statistics and the
    global random state are untouched.
    """
    probe = copy.deepcopy(model).train(training)
    benchmark_formulations(probe)
    images = torch.randn(batch_shape, generator=torch.Generator().manual_seed(0)).to(device)
    images = images.contiguous(memory_format=memory_format)
    if training:
        probe(images).sum().backward()
    else:
        with torch.no_grad():
            probe(images)
    return formulation_choices(probe)


def agree_on_formulations(
    model: nn.Module,
    context: DistributedContext,
    *,
    recorded: dict[str, str] | None,
    measure: bool,
    batch_shape: tuple[int, ...],
    training: bool = True,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, str]:
    """Pin the formulations every rank trains with; returns them (``{}``: each layer keeps its setting).

    ``recorded`` (a resumed checkpoint's choices) wins, so the resumed run repeats its choice;
    else with ``measure`` rank 0 times them (in ``training`` mode or for evaluation, see
    ``measure_formulations``) and broadcasts its choice, since ranks that chose apart would compute
    different gradients (or score their shards with different roundings).
    """
    if recorded:
        choices = dict(recorded)
    elif measure:
        choices = broadcast_object(
            measure_formulations(model, batch_shape, context.device, training=training, memory_format=memory_format)
            if context.is_main
            else None,
            context,
        )
    else:
        return {}
    pin_formulations(model, choices)
    return choices


def choices_text(choices: dict[str, str]) -> str:
    """``{layer: formulation}`` as one MLflow param value: ``layer=formulation,...``, sorted by layer."""
    return ",".join(f"{layer}={name}" for layer, name in sorted(choices.items()))


def formulation_params(model: nn.Module) -> dict[str, str]:
    """The MLflow param of the formulations used: ``derived.lambda_formulations`` (``{}``: none ran yet)."""
    choices = formulation_choices(model)
    if not choices:
        return {}
    return {"derived.lambda_formulations": choices_text(choices)}
