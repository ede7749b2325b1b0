"""Lambda convolution as GEMMs: a DFT along each row, a short convolution down each column.

The position lambdas are a 2-D ``r x r`` convolution of every value map. A direct
convolution costs ``r*r`` multiply-adds per output, and with a single input channel it
runs far below GEMM speed. Here the convolution is split along its two axes:

1. along ``x`` it becomes a product: a real DFT of each map row (one GEMM with a small
   DFT matrix). Circular length ``L = W + r//2`` keeps every kept output free of
   wrap-around, so nothing is approximated;
2. along ``y`` it stays a convolution with ``r`` taps, but per frequency it is a
   complex matrix product: output rows from input rows. Output rows are taken in blocks,
   so that each block is one small dense (block-Toeplitz) matrix and the step is one
   batched GEMM over frequencies;
3. an inverse real DFT (one more GEMM) back to ``x``.

Per output this is ``4*(block + r - 1)/block * bins/W + 2*bins`` multiply-adds
(``bins = L//2 + 1``): ~130 instead of 529 at 56x56 with ``r = 23``, all in GEMMs. The
lambdas are then used block by block (``RowBlockContraction``) and never stored. The
result equals the direct convolution up to floating-point rounding (float64: ~1e-14).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from lambda_repro.models.lambda_kernel import position_bias, reachable_taps


def row_block(height: int) -> int:
    """Output rows per block-Toeplitz block: a divisor of ``height`` near 4 (measured best on CPU)."""
    for block in (4, 7, 6, 5, 8, 3, 2):
        if height % block == 0:
            return block
    return min(height, 4)


class RowDFT:
    """The real-DFT matrices of one map width and kernel width, as GEMM operands.

    ``forward``: ``(W, 2*bins)``, maps ``x`` to interleaved (real, imag) spectra.
    ``inverse``: ``(W, 2*bins)``, maps spectra back to the first ``W`` positions.
    ``taps``: ``(rx, 2*bins)``, the spectrum of each kernel tap ``dx - rx//2`` as seen by
    a cross-correlation (phase ``+2*pi*f*(dx - pad)/L``).
    """

    def __init__(self, width: int, kernel_width: int, dtype: torch.dtype, device: torch.device) -> None:
        pad = kernel_width // 2
        length = width + pad
        self.bins = length // 2 + 1
        freqs = torch.arange(self.bins, dtype=torch.float64, device=device)
        phase = (2 * math.pi / length) * torch.outer(torch.arange(width, dtype=torch.float64, device=device), freqs)
        cos, sin = torch.cos(phase), torch.sin(phase)
        # A real signal's spectrum is Hermitian: bins 1..L/2 stand for two, bin 0 (and
        # the Nyquist bin of an even length) for one.
        weight = torch.full((self.bins,), 2.0, dtype=torch.float64, device=device)
        weight[0] = 1.0
        if length % 2 == 0:
            weight[-1] = 1.0
        self.forward = torch.stack([cos, -sin], -1).reshape(width, -1).to(dtype)
        self.inverse = (torch.stack([cos * weight, -sin * weight], -1).reshape(width, -1) / length).to(dtype)
        taps = torch.arange(kernel_width, dtype=torch.float64, device=device) - pad
        tap_phase = (2 * math.pi / length) * torch.outer(taps, freqs)
        self.taps = torch.stack([torch.cos(tap_phase), torch.sin(tap_phase)], -1).reshape(kernel_width, -1).to(dtype)


def column_toeplitz(kernel_spectrum: torch.Tensor, block: int) -> torch.Tensor:
    """Per frequency, the real matrix taking ``block + ry - 1`` input rows to ``block`` output rows.

    ``kernel_spectrum``: ``(k, u, ry, bins, 2)``. Returns ``(bins, 2*k*block, u*(block+ry-1)*2)``
    with rows ordered (real/imag out, k, row) and columns (u, input row, real/imag in): the
    complex product ``(a + ib)(c + id)`` written as the real 2x2 block ``[[a, -b], [b, a]]``.
    """
    key_dim, depth, ry, bins, _ = kernel_spectrum.shape
    span = block + ry - 1
    device = kernel_spectrum.device
    offset = torch.arange(span, device=device) - torch.arange(block, device=device)[:, None]  # row j - row i
    inside = ((offset >= 0) & (offset < ry)).to(kernel_spectrum.dtype)  # (block, span)
    taps = kernel_spectrum[:, :, offset.clamp(0, ry - 1)] * inside[:, :, None, None]  # (k, u, block, span, bins, 2)
    real, imag = taps.unbind(-1)
    matrix = torch.stack([torch.stack([real, -imag], -1), torch.stack([imag, real], -1)])  # (o, k, u, i, j, f, c)
    return matrix.permute(5, 0, 1, 3, 2, 4, 6).reshape(bins, 2 * key_dim * block, depth * span * 2)


def _row_block_lambdas(
    toeplitz: torch.Tensor, columns: torch.Tensor, inverse: torch.Tensor, block_index: int, shape: tuple[int, ...]
) -> torch.Tensor:
    """Lambdas of one block of rows: ``(block*W*N, k, v)``, rows ordered (row, x, N)."""
    width, key_dim, block, n, value_dim = shape
    product = torch.bmm(toeplitz, columns[block_index])  # (f, (o, k, i), (N, v))
    lambdas = inverse @ product.view(inverse.shape[1], -1)  # (x, k, i, N, v)
    lambdas = lambdas.view(width, key_dim, block, n, value_dim).permute(2, 0, 3, 1, 4)
    return lambdas.reshape(block * width * n, key_dim, value_dim)


class RowBlockContraction(torch.autograd.Function):
    """``y = q . lambda_p`` computed one block of rows at a time; lambdas never stored.

    The lambdas are the largest tensor of the layer (``k`` times the values). Built and
    used block by block, they stay in cache, no large buffer is allocated (fresh pages
    cost as much as the arithmetic on CPU), and nothing of that size is kept for the
    backward, which rebuilds each block's lambdas instead: less memory than the published
    layer at the cost of one more forward GEMM pass.

    Inputs: ``q_rows (H*W*N, heads, k)`` ordered (row, x, N); ``columns`` and
    ``toeplitz`` as built in ``position_output_spectral``; ``inverse`` the inverse DFT
    matrix (constant). Returns ``(H*W*N, heads, v)``.
    """

    @staticmethod
    def forward(ctx, q_rows, columns, toeplitz, inverse, height: int, width: int, n: int, value_dim: int):
        blocks, key_dim, block = columns.shape[0], q_rows.shape[-1], toeplitz.shape[1] // (2 * q_rows.shape[-1])
        shape = (width, key_dim, block, n, value_dim)
        out = q_rows.new_empty(q_rows.shape[0], q_rows.shape[1], value_dim)
        for index, (start, stop) in enumerate(_row_ranges(blocks, block, height, width * n)):
            lambdas = _row_block_lambdas(toeplitz, columns, inverse, index, shape)
            torch.bmm(q_rows[start:stop], lambdas[: stop - start], out=out[start:stop])
        ctx.save_for_backward(q_rows, columns, toeplitz, inverse)
        ctx.dims = (height, shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q_rows, columns, toeplitz, inverse = ctx.saved_tensors
        height, shape = ctx.dims
        width, key_dim, block, n, value_dim = shape
        need_q, need_columns, need_toeplitz = ctx.needs_input_grad[:3]
        grad_out = grad_out.contiguous()
        grad_q = torch.empty_like(q_rows) if need_q else None
        grad_columns = torch.empty_like(columns) if need_columns else None
        grad_toeplitz = torch.zeros_like(toeplitz) if need_toeplitz else None
        for index, (start, stop) in enumerate(_row_ranges(columns.shape[0], block, height, width * n)):
            lambdas = _row_block_lambdas(toeplitz, columns, inverse, index, shape)[: stop - start]
            grad = grad_out[start:stop]
            if need_q:
                torch.bmm(grad, lambdas.transpose(1, 2), out=grad_q[start:stop])
            if not (need_columns or need_toeplitz):
                continue
            grad_lambdas = q_rows.new_zeros(block * width * n, key_dim, value_dim)
            torch.bmm(q_rows[start:stop].transpose(1, 2), grad, out=grad_lambdas[: stop - start])
            # Back through the row-block layout and the inverse DFT: (x, k, i, N, v) -> spectra.
            grad_lambdas = grad_lambdas.view(block, width, n, key_dim, value_dim).permute(1, 3, 0, 2, 4)
            grad_product = inverse.t() @ grad_lambdas.reshape(width, -1)
            grad_product = grad_product.view(toeplitz.shape[0], toeplitz.shape[1], -1)
            if need_toeplitz:
                grad_toeplitz.baddbmm_(grad_product, columns[index].transpose(1, 2))
            if need_columns:
                torch.bmm(toeplitz.transpose(1, 2), grad_product, out=grad_columns[index])
        return grad_q, grad_columns, grad_toeplitz, None, None, None, None, None


def _row_ranges(blocks: int, block: int, height: int, row_size: int) -> list[tuple[int, int]]:
    """Flat ``(start, stop)`` of each block's rows in the (row, x, N) order; the last one cut at ``height``."""
    return [(b * block * row_size, min((b + 1) * block, height) * row_size) for b in range(blocks)]


def position_output_spectral(
    queries: torch.Tensor,
    values: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Position term ``y_p``, same signature and result as ``position_output_reference``."""
    n, depth, value_dim, positions = values.shape
    key_dim, r = weight.shape[0], weight.shape[-1]
    heads = queries.shape[1]
    kernel = reachable_taps(weight.reshape(key_dim, depth, r, r), height, width)
    ry, rx = kernel.shape[-2:]
    dft = RowDFT(width, rx, values.dtype, values.device)
    bins, pad_y = dft.bins, ry // 2
    block = row_block(height)
    blocks = -(-height // block)
    span = block + ry - 1

    # Row spectra of every value map, then per block of output rows the span of input
    # rows it reads (zero rows above and below the map): (blocks, f, (u, row, re/im), (N, v)).
    spectra = values.reshape(n, depth, value_dim, height, width) @ dft.forward
    spectra = F.pad(spectra, (0, 0, pad_y, blocks * block + span - block - height - pad_y))
    windows = spectra.unfold(3, span, block).reshape(n, depth, value_dim, blocks, bins, 2, span)
    columns = windows.permute(3, 4, 1, 6, 5, 0, 2).reshape(blocks, bins, depth * span * 2, n * value_dim)
    toeplitz = column_toeplitz((kernel @ dft.taps).reshape(key_dim, depth, ry, bins, 2), block)

    q_rows = queries.permute(3, 0, 1, 2).reshape(positions * n, heads, key_dim)
    out = RowBlockContraction.apply(q_rows, columns, toeplitz, dft.inverse, height, width, n, value_dim)
    out = out.view(positions, n, heads, value_dim).permute(1, 2, 3, 0)
    if bias is not None:
        out = out + position_bias(queries, bias)
    return out
