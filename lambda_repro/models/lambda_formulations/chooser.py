"""The lambda layer's output ``y = q . (lambda_c + lambda_p)``: which exact formulation runs, and running it.

The content lambda ``lambda_c`` is one small ``(k, v)`` matrix per image, computed by the
layer; the position lambdas ``lambda_p`` (one per position) are what the formulations
differ in. Every formulation computes the same function as the published one:

* ``"reference"``: the published 3-D convolution + einsum (the nominal MAC count);
* ``"dense"``: dense relative-position matrices, all GEMMs (small maps; see ``dense``);
* ``"spectral"``: a DFT along rows and block-Toeplitz GEMMs down columns, lambdas built one
  block of rows at a time (large maps; see ``spectral``);
* ``"auto"``: the fastest of these, measured on the machine it runs on (``FormulationChooser``).

Graph capture (``torch.compile``, ``torch.export``, ONNX export, ``torch.jit.trace``) runs
``rule_formulation``'s choice: nothing is timed while a graph is being captured. ``torch.compile``
runs the spectral formulation's eager kernel as one custom op (``spectral_op``); export, ONNX
and tracing capture it as plain tensor ops (``lambda_output_spectral_functional``).

Precision: under bf16 autocast the fast formulations run their GEMMs in bf16 (fp32
accumulation inside the GEMMs), as the published formulation does under the same autocast;
``tests/test_lambda_precision.py`` bounds their error by the reference's own. Under fp16
autocast they run in fp32: sums of 529 taps in fp16 are what overflows into the NaNs users
report. The result is returned in the queries' dtype.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lambda_repro.models.lambda_formulations.dense import lambda_output_dense
from lambda_repro.models.lambda_formulations.reference import lambda_output_reference
from lambda_repro.models.lambda_formulations.spectral import (
    lambda_output_spectral,
    lambda_output_spectral_functional,
)
from lambda_repro.models.lambda_formulations.spectral_op import lambda_output_spectral_op

LambdaOutput = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, int, int],
    torch.Tensor,
]

FORMULATIONS: dict[str, LambdaOutput] = {
    "reference": lambda_output_reference,
    "dense": lambda_output_dense,
    "spectral": lambda_output_spectral,
}
IMPLEMENTATIONS = ("auto", *FORMULATIONS)

# Up to this many positions (e.g. 20x20) the dense matrices win: measured on CPU at 7x7 and
# 14x14 (dense ~1.7x faster than spectral) and 28x28 (spectral ~6x faster than dense).
DENSE_MAX_POSITIONS = 400
# Dense memory grows as positions^2 (16 x P^2 floats): beyond 28x28 it is never a candidate.
DENSE_CANDIDATE_MAX_POSITIONS = 784
# torch.compile runs the eager spectral kernel as one custom op (spectral_op) instead of the
# functional form; False: the functional form (what export / ONNX / tracing always capture).
COMPILE_SPECTRAL_AS_OP = True
# "auto" keeps the rule's formulation unless another one is faster by more than this:
# the tolerance, and what keeps the choice stable from run to run on the same host.
SWITCH_MARGIN = 0.05


def rule_formulation(height: int, width: int) -> str:
    """The formulation a fixed rule picks for an ``height x width`` map (measured best on this host kind)."""
    return "dense" if height * width <= DENSE_MAX_POSITIONS else "spectral"


# Older name, kept public (lambda_formulations, lambda_position).
choose_formulation = rule_formulation


def in_graph_capture() -> bool:
    """True while ``torch.compile`` / ``torch.export`` / ONNX export / ``torch.jit.trace`` records a graph."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def compiling_only() -> bool:
    """True under ``torch.compile`` proper, not while exporting, ONNX-exporting or tracing for another runtime."""
    if not COMPILE_SPECTRAL_AS_OP or not torch.compiler.is_compiling():
        return False
    return not (torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def candidate_formulations(height: int, width: int) -> tuple[str, ...]:
    """The formulations worth timing for an ``height x width`` map."""
    dense = ("dense",) if height * width <= DENSE_CANDIDATE_MAX_POSITIONS else ()
    return ("reference", *dense, "spectral")


def fast_compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the fast formulations compute in for inputs of ``dtype`` (see the module docstring)."""
    if torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type) == torch.bfloat16:
        return torch.bfloat16
    return torch.promote_types(dtype, torch.float32)


def run_formulation(
    name: str,
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Layer output before pooling, ``(N, heads, value_dim, H*W)``, by the named formulation.

    Args:
        queries: ``(N, heads, key_dim, H*W)``; values: ``(N, intra_depth, value_dim, H*W)``.
        content: the content lambda ``(N, key_dim, value_dim)``.
        weight, bias: the ``lambda_conv`` parameters.
    """
    if name == "reference":
        return lambda_output_reference(queries, values, content, weight, bias, height, width)
    capturing = in_graph_capture()
    formulation = FORMULATIONS[name]
    if name == "spectral" and capturing:
        formulation = lambda_output_spectral_op if compiling_only() else lambda_output_spectral_functional
    dtype = fast_compute_dtype(queries.dtype, queries.device)
    with torch.autocast(queries.device.type, enabled=False):
        out = formulation(
            queries.to(dtype),
            values.to(dtype),
            content.to(dtype),
            weight.to(dtype),
            None if bias is None else bias.to(dtype),
            height,
            width,
        )
    out = out.to(queries.dtype)
    return out if capturing else _ContiguousGradient.apply(out)


class _ContiguousGradient(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient.

    A gradient that arrives expanded (``out.sum().backward()`` gives stride-0 gradients)
    sends the per-position batched matmuls of the fast formulations down a path that
    copies every tiny matrix separately: 3-4x slower. One copy here avoids it.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class FormulationChooser:
    """Times each candidate formulation once per (shape, dtype, device, mode) and remembers the fastest.

    As ``cudnn.benchmark`` does, on the inputs of the first call with a new key; later calls
    with that key reuse the choice. One chooser is shared by the layers of a model, so a
    shape is measured once per model. ``timings`` keeps the measured seconds per key.
    """

    def __init__(self, repeats: int = 2) -> None:
        self.repeats = repeats
        self.choices: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}

    @staticmethod
    def key(queries, values, weight, height: int, width: int, training: bool) -> tuple:
        device = queries.device
        autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        mode = "train" if training else "inference"
        return (tuple(queries.shape), tuple(values.shape), tuple(weight.shape), height, width,
                str(queries.dtype), str(autocast), str(device), mode)  # fmt: skip

    def choose(self, queries, values, content, weight, bias, height: int, width: int, training: bool) -> str:
        key = self.key(queries, values, weight, height, width, training)
        if key not in self.choices:
            inputs = (queries, values, content, weight, bias)
            seconds = {
                name: self._time(name, inputs, height, width, training)
                for name in candidate_formulations(height, width)
            }
            self.timings[key] = seconds
            self.choices[key] = pick_fastest(seconds, rule_formulation(height, width))
        return self.choices[key]

    def _time(self, name: str, inputs: tuple, height: int, width: int, training: bool) -> float:
        inputs = [None if t is None else t.detach().clone().requires_grad_(training) for t in inputs]
        best = float("inf")
        with torch.set_grad_enabled(training):
            for repeat in range(self.repeats + 1):  # the first run warms caches and allocators
                start = time.perf_counter()
                out = run_formulation(name, *inputs, height, width)
                if training:
                    out.backward(torch.ones_like(out))
                _synchronize(out.device)
                if repeat:
                    best = min(best, time.perf_counter() - start)
        return best


def pick_fastest(seconds: dict[str, float], preferred: str) -> str:
    """The fastest candidate, unless ``preferred`` is within ``SWITCH_MARGIN`` of it."""
    fastest = min(seconds, key=seconds.__getitem__)
    if preferred in seconds and seconds[preferred] <= (1 + SWITCH_MARGIN) * seconds[fastest]:
        return preferred
    return fastest


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_formulation(
    implementation: str,
    chooser: FormulationChooser | None,
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> str:
    """The formulation an ``implementation`` setting runs for these inputs (``"auto"`` measured, or the rule)."""
    if implementation != "auto":
        return implementation
    if chooser is None or in_graph_capture():
        return rule_formulation(height, width)
    training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (queries, values, content, weight, bias)
    )
    return chooser.choose(queries, values, content, weight, bias, height, width, training)


def lambda_output(
    implementation: str,
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Layer output by ``implementation`` (``"auto"``: the rule's choice; layers measure, see ``LambdaLayer``)."""
    name = resolve_formulation(implementation, None, queries, values, content, weight, bias, height, width)
    return run_formulation(name, queries, values, content, weight, bias, height, width)
