"""The eager spectral kernel as one opaque operator, for ``torch.compile``.

Inductor cannot follow the kernel's ``out=`` writes into reused buffers, so a compiled model
used to run ``lambda_output_spectral_functional`` instead: all lambdas at once, stored for the
backward (``k`` times the values), and the dense DFT GEMMs over every row. Registered as a
``torch.library`` custom op with its own backward op, the row-block kernel is one call in the
compiled graph: inductor fuses what is around it (projections, norms, the reorders) and runs the
kernel as eager mode does. Export, ONNX and ``torch.jit.trace`` still take the functional form,
which other runtimes can read.

The ops register at import (a definition, like a function's, not state that changes). The
CUDA path is the same code; it was never run on a GPU here.
"""

from __future__ import annotations

import torch

from lambda_repro.models.lambda_formulations.spectral import row_block_backward, row_block_forward, row_kernel_output


@torch.library.custom_op("lambda_repro::spectral_rows", mutates_args=())
def spectral_rows(
    q_rows: torch.Tensor,
    spectra: torch.Tensor,
    toeplitz: torch.Tensor,
    inverse: torch.Tensor,
    shared: torch.Tensor,
    height: int,
    width: int,
    block: int,
    length: int,
) -> torch.Tensor:
    """``RowBlockContraction``'s forward: ``(H*W*N, heads, v)``."""
    return row_block_forward(q_rows, spectra, toeplitz, inverse, shared, height, width, block, length)[0]


@spectral_rows.register_fake
def _spectral_rows_fake(q_rows, spectra, toeplitz, inverse, shared, height, width, block, length):
    return q_rows.new_empty(q_rows.shape[0], q_rows.shape[1], shared.shape[-1])


@torch.library.custom_op("lambda_repro::spectral_rows_backward", mutates_args=())
def spectral_rows_backward(
    grad_out: torch.Tensor,
    q_rows: torch.Tensor,
    spectra: torch.Tensor,
    toeplitz: torch.Tensor,
    inverse: torch.Tensor,
    shared: torch.Tensor,
    height: int,
    width: int,
    block: int,
    length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``spectral_rows`` for ``(q_rows, spectra, toeplitz, shared)``, each contiguous."""
    grads = row_block_backward(grad_out, q_rows, spectra, toeplitz, inverse, shared, height, width, block, length)
    return tuple(grad.contiguous() for grad in grads)


@spectral_rows_backward.register_fake
def _spectral_rows_backward_fake(grad_out, q_rows, spectra, toeplitz, inverse, shared, height, width, block, length):
    return tuple(t.new_empty(t.shape) for t in (q_rows, spectra, toeplitz, shared))


def _setup_context(ctx, inputs, output) -> None:
    q_rows, spectra, toeplitz, inverse, shared, *dims = inputs
    ctx.save_for_backward(q_rows, spectra, toeplitz, inverse, shared)
    ctx.dims = tuple(dims)


def _backward(ctx, grad_out):
    grad_q, grad_spectra, grad_toeplitz, grad_shared = spectral_rows_backward(grad_out, *ctx.saved_tensors, *ctx.dims)
    return grad_q, grad_spectra, grad_toeplitz, None, grad_shared, None, None, None, None


spectral_rows.register_autograd(_backward, setup_context=_setup_context)


def lambda_output_spectral_op(
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Layer output, as ``lambda_output_spectral``, with the row-block kernel as one custom op."""
    return row_kernel_output(spectral_rows, queries, values, content, weight, bias, height, width)
