"""The lambda layer's output ``y = q . (lambda_c + lambda_p)``: exact formulations, and the choice.

The content lambda ``lambda_c`` is one small ``(k, v)`` matrix per image, computed by the
layer; the position lambdas ``lambda_p`` (one per position) are what the formulations
differ in.

Every formulation computes the same function as the published one (``"reference"``):

* ``"reference"``: the published 3-D convolution + einsum (the nominal MAC count);
* ``"dense"``: dense relative-position matrices, all GEMMs (small maps; see ``lambda_dense``);
* ``"spectral"``: a DFT along rows and block-Toeplitz GEMMs down columns, lambdas built one
  block of rows at a time and never stored (large maps; see ``lambda_spectral``);
* ``"auto"``: per call, the fastest of these for the map size (measured on CPU with
  ``scripts/bench_lambda.py``).

The fast formulations run in at least float32, also under bf16 / fp16 autocast: fp32
accumulation of the lambdas (sums of 529 taps) is what keeps fp16 training free of the
overflow NaNs users report. The result is cast back to the queries' dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lambda_repro.models.lambda_formulations.dense import lambda_output_dense
from lambda_repro.models.lambda_formulations.reference import lambda_output_reference
from lambda_repro.models.lambda_formulations.spectral import lambda_output_spectral

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


def choose_formulation(height: int, width: int) -> str:
    """What ``"auto"`` runs for an ``height x width`` map.

    The same rule is used on CUDA, where it was never measured (no GPU was available):
    both formulations are batched GEMMs, efficient there too.
    """
    return "dense" if height * width <= DENSE_MAX_POSITIONS else "spectral"


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
    """Layer output before pooling, ``(N, heads, value_dim, H*W)``, by the named formulation.

    Args:
        queries: ``(N, heads, key_dim, H*W)``; values: ``(N, intra_depth, value_dim, H*W)``.
        content: the content lambda ``(N, key_dim, value_dim)``.
        weight, bias: the ``lambda_conv`` parameters.
    """
    if implementation == "auto":
        implementation = choose_formulation(height, width)
    if implementation == "reference":
        return lambda_output_reference(queries, values, content, weight, bias, height, width)
    formulation = FORMULATIONS[implementation]
    dtype = torch.promote_types(queries.dtype, torch.float32)
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
    return _ContiguousGradient.apply(out.to(queries.dtype))
