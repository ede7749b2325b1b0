"""Which formulation each lambda layer of a model runs: measure it, inspect it, pin it.

By default an ``"auto"`` layer follows a fixed rule (deterministic, nothing timed). The
process that owns the run (a training or profiling stage) may call
``benchmark_formulations(model)``, the per-model counterpart of ``cudnn.benchmark``: from
then on each ``"auto"`` layer times the exact formulations on the first call with a new
(shape, dtype, device, mode) key and runs the fastest. Two processes may then choose
differently where two formulations are close, and their results differ in the last bits,
so a run that must be bit-reproducible (a resumed training) records
``formulation_choices(model)`` (checkpoint, MLflow params) and calls
``pin_formulations(model, choices)`` before its first step.
"""

from __future__ import annotations

from torch import nn

from lambda_repro.models.lambda_formulations.chooser import FORMULATIONS, FormulationChooser
from lambda_repro.models.lambda_layer import LambdaLayer


def lambda_layers(model: nn.Module) -> dict[str, LambdaLayer]:
    """The model's lambda layers by module name (``""`` for a bare layer)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LambdaLayer)}


def benchmark_formulations(model: nn.Module, repeats: int = 2) -> FormulationChooser:
    """Let the model's ``"auto"`` lambda layers choose by measurement; one chooser, shared, is returned.

    Each key is timed once per model (``repeats`` timed runs per candidate after a warm-up);
    ``chooser.timings`` holds the seconds measured.
    """
    chooser = FormulationChooser(repeats)
    for layer in lambda_layers(model).values():
        layer.chooser = chooser
    return chooser


def formulation_choices(model: nn.Module) -> dict[str, str]:
    """``{layer name: formulation}`` of every lambda layer that has a concrete one.

    A pinned (or explicitly set) layer reports its setting; an ``"auto"`` layer what its
    last forward ran; an ``"auto"`` layer that never ran is left out.
    """
    choices = {}
    for name, layer in lambda_layers(model).items():
        formulation = layer.implementation if layer.implementation != "auto" else layer.last_formulation
        if formulation is not None:
            choices[name] = formulation
    return choices


def pin_formulations(model: nn.Module, choices: dict[str, str]) -> None:
    """Make each named lambda layer run the given formulation from now on.

    Raises ``ValueError`` (changing nothing) for a name that is not a lambda layer of the
    model or a formulation that does not exist.
    """
    layers = lambda_layers(model)
    unknown_layers = sorted(set(choices) - set(layers))
    unknown_formulations = sorted({f for f in choices.values() if f not in FORMULATIONS})
    if unknown_layers or unknown_formulations:
        raise ValueError(
            f"cannot pin lambda formulations: not lambda layers of this model: {unknown_layers}; "
            f"unknown formulations: {unknown_formulations} (choose from {sorted(FORMULATIONS)})"
        )
    for name, formulation in choices.items():
        layers[name].implementation = formulation
