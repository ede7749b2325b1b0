"""Which formulation each lambda layer trains with: measured once (``model.lambda_implementation: measured``),
recorded in the checkpoint and MLflow, and pinned again on resume so that a resumed run computes the same bits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lambda_repro.distributed import DistributedContext, broadcast_object
from lambda_repro.models import benchmark_formulations, formulation_choices, pin_formulations

# The value of model.lambda_implementation that asks for measurement (the others name a layer setting).
MEASURED = "measured"


def measure_formulations(model: nn.Module, batch_shape: tuple[int, ...], device: torch.device) -> dict[str, str]:
    """Time the exact formulations of every lambda layer on one training step's shape; ``{layer: fastest}``.

    Runs on a copy in train mode (forward and backward), so the model's BatchNorm statistics
    and the global random state are untouched.
    """
    probe = copy.deepcopy(model).train()
    benchmark_formulations(probe)
    images = torch.randn(batch_shape, generator=torch.Generator().manual_seed(0)).to(device)
    probe(images).sum().backward()
    return formulation_choices(probe)


def agree_on_formulations(
    model: nn.Module,
    context: DistributedContext,
    *,
    recorded: dict[str, str] | None,
    measure: bool,
    batch_shape: tuple[int, ...],
) -> dict[str, str]:
    """Pin the formulations every rank trains with; returns them (``{}``: each layer keeps its setting).

    ``recorded`` (a resumed checkpoint's choices) wins, so the resumed run repeats its choice;
    else with ``measure`` rank 0 times them and broadcasts its choice, since ranks that chose
    apart would compute different gradients.
    """
    if recorded:
        choices = dict(recorded)
    elif measure:
        choices = broadcast_object(
            measure_formulations(model, batch_shape, context.device) if context.is_main else None, context
        )
    else:
        return {}
    pin_formulations(model, choices)
    return choices


def formulation_params(model: nn.Module) -> dict[str, str]:
    """The MLflow param of the formulations used: ``derived.lambda_formulations`` = ``layer=formulation,...``."""
    choices = formulation_choices(model)
    if not choices:
        return {}
    return {"derived.lambda_formulations": ",".join(f"{layer}={name}" for layer, name in sorted(choices.items()))}
