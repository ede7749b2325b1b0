"""Lambda convolution as GEMMs: a DFT along each row, a short convolution down each column.

The position lambdas are a 2-D ``r x r`` convolution of every value map. A direct
convolution costs ``r*r`` multiply-adds per output, and with a single input channel it
runs far below GEMM speed. Here the convolution is split along its two axes:

1. along ``x`` it becomes a product: a real DFT of each map row (one GEMM with a small
   DFT matrix). Circular length ``L = W + r//2`` keeps every kept output free of
   wrap-around, so nothing is approximated. Wide rows are cut into tiles of ``T`` outputs
   (overlap-save: each tile transforms its ``T + 2*(r//2)`` inputs, ``L = T + 2*(r//2)``), so
   that the DFT's cost per output stays bounded instead of growing with ``W`` (``row_tile``);
2. along ``y`` it stays a convolution with ``r`` taps, but per frequency it is a
   complex matrix product: output rows from input rows. Output rows are taken in blocks,
   so that each block is one small dense (block-Toeplitz) matrix and the step is one
   batched GEMM over frequencies;
3. an inverse real DFT (one more GEMM) back to ``x``.

Per output this is ``4*(block + r - 1) * bins/T + 2*bins`` multiply-adds (``bins = L//2 + 1``,
``T = W`` for whole rows; the column step, then the inverse DFT): ~130 instead of 529 at 56x56
with ``r = 23`` and ``block = 4``, ~150 at any wider map (tiles), all in GEMMs. The
lambdas are then used block by block (``RowBlockContraction``; kept for the backward in training). The
result equals the direct convolution up to floating-point rounding (float64: ~1e-14).

Only GEMMs and copies, so the same code runs on CUDA (cuBLAS); that path was never run on a
GPU here (none was available), and the block size was tuned on CPU only.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from lambda_repro import process_heap
from lambda_repro.models.lambda_formulations.kernel import reachable_taps, shared_lambda
from lambda_repro.models.lambda_formulations.wide_product import small_times_wide

KEEP_LAMBDAS_FOR_BACKWARD = True
"""Training may keep every block's lambdas for the backward, as the published layer keeps its own (autograd then
holds 0.96-1.10x what it holds for the published layer at 56x56 / 28x28), instead of rebuilding them block by
block (0.32-0.47x). False: always the lower-memory rebuild (what compile's custom op runs)."""

KEEP_LAMBDAS_MAX_BYTES_CPU = 32 * 2**20
"""On CPU, in a process whose heap glibc trims (the default; ``process_heap``), the lambdas are kept only up to this
size: a fresh tensor that large costs page faults on every step, and past some size they cost more than the
rebuild saves. Where the heap is kept (``process_heap.keep_heap``: every process the stages own, and
``scripts/bench_lambda.py``) the pages are reused without faults and the lambdas are kept at any size. Measured on
the 2-core AMD EPYC (Zen 3) host, 2026-12-08 (frame sgemm ~140 / 3x3 conv ~132 GFLOP/s), lambda_resnet50 training
interleaved beside resnet50, this limit against keeping them all: with the heap kept 0.889x -> 0.963x resnet50 at
batch 32 (lambdas 51-205 MB per layer) and 0.831x -> 0.847x at batch 8 (only the 128-channel 56x56 layer's, 51 MB,
is over the limit); with glibc's default heap 0.813x -> 0.764x at batch 32, hence the limit there. Per layer, with
the heap kept: forward + backward 8% faster for the 128-channel 56x56 layer at batch 8, 19% for the 64-channel
56x56 and 128-channel 28x28 layers at batch 32. On CUDA (a caching allocator, no page faults) they are always
kept; that path was never run on a GPU."""


def keeps_lambdas(q_rows: torch.Tensor, value_dim: int) -> bool:
    """Whether a training forward keeps its lambdas, ``(H*W*N, k, v)``, for the backward (see above)."""
    if not KEEP_LAMBDAS_FOR_BACKWARD:
        return False
    size = q_rows.shape[0] * q_rows.shape[2] * value_dim * q_rows.element_size()
    return q_rows.device.type == "cuda" or size <= KEEP_LAMBDAS_MAX_BYTES_CPU or process_heap.heap_kept()


FFT_MIN_WIDTH = 320
"""Whole rows at least this wide are transformed by a real FFT instead of a DFT GEMM. The GEMM costs
``~2*bins`` multiply-adds per lambda entry, growing with the width, the FFT ``O(log W)``, but the
GEMM runs near peak and the FFT (with its reorders) does not: measured on the 2-core CPU host
(``scripts/bench_lambda.py --only scaling``, 64-channel layer, batch 8, interleaved), FFT rows
were 1.3-1.7x slower than GEMM rows at widths 56, 112 and 160, forward and backward, and the
ratio grew slowly with the width; 320 is that trend's crossover, extrapolated, not measured.
With tiles (the default from ``TILE_MIN_WIDTH``) rows that wide are cut into tiles, so by default the
FFT only runs with tiles switched off."""


def uses_fft(width: int) -> bool:
    """Whether whole rows of ``width`` take the real FFT (tiled rows always take the DFT GEMM)."""
    return width >= FFT_MIN_WIDTH


TILE_MIN_WIDTH = 192
"""Rows at least this wide are cut into tiles (``row_tile``); ``10**9`` switches tiles off. Measured on the 2-core
AMD EPYC (Zen 3) host, 64-channel layer, interleaved against whole rows (``scripts/bench_lambda.py --only
scaling``): tiles cost the same at widths 112 and 160 (0.97-1.09x, forward and forward + backward, batch 8; the
inverse DFT GEMM is bound by memory there, not by its multiply-adds, while the tiles' column products grow);
at 224 0.83-0.99x forward and 0.92-1.00x forward + backward (batches 8 and 2), at 320 0.72-0.75x and 0.75-0.78x
(batch 2). 192 lies between the last tie and the first gain; it was not measured itself."""


def row_dft_macs(tile: int, whole_row: bool, kernel_width: int, span: int) -> float:
    """Multiply-adds per lambda entry of the kernel's row DFT work for rows cut in tiles of ``tile`` outputs: the
    column step (``4*span`` per frequency of a tile, shared by its ``tile`` outputs) and the inverse DFT (``2*bins``).
    A whole row is zero beyond its ends, so ``W + r//2`` positions suffice; a tile reads ``r//2`` real inputs
    on each side."""
    pad = kernel_width // 2
    bins = (tile + pad if whole_row else tile + 2 * pad) // 2 + 1
    return 2 * bins * (2 * span / tile + 1)


def row_tile(width: int, kernel_width: int, span: int) -> int:
    """Outputs per row tile: ``width`` (whole rows) below ``TILE_MIN_WIDTH``, from there the tile width that costs
    the fewest multiply-adds per output (``row_dft_macs``; a last tile past the map's edge computes columns that
    are dropped), or the whole row where that costs fewer. Counted: at 56x56 whole rows cost 131 per entry (tiles
    149); at 224 tiles of 32 cost 147 against 291, at 320 147 against 386: near 150 at any width."""
    return _cheapest_tile(width, kernel_width, span) if width >= TILE_MIN_WIDTH else width


@functools.lru_cache(maxsize=256)
def _cheapest_tile(width: int, kernel_width: int, span: int) -> int:
    best, best_macs = width, row_dft_macs(width, True, kernel_width, span)
    for tile in range(1, width):
        computed = row_tiles(width, tile) * tile  # columns the tiles compute, the dropped ones too
        if (macs := row_dft_macs(tile, False, kernel_width, span) * computed / width) < best_macs:
            best, best_macs = tile, macs
    return best


def row_tiles(width: int, tile: int) -> int:
    """How many tiles of ``tile`` outputs cover a row of ``width``."""
    return -(-width // tile)


def fft_length(minimum: int) -> int:
    """The smallest 5-smooth length ``>= minimum`` (fast FFT sizes; any length >= W + r//2 is exact)."""
    length = minimum
    while True:
        rest = length
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


def circular_length(width: int, kernel_width: int) -> int:
    """Circular length of the row transform: ``W + r//2`` leaves room for the kernel (no wrap-around)."""
    minimum = width + kernel_width // 2
    return fft_length(minimum) if uses_fft(width) else minimum


def row_block(height: int) -> int:
    """Output rows per block-Toeplitz block: a divisor of ``height`` near 4 (measured best on CPU)."""
    for block in (4, 7, 6, 5, 8, 3, 2):
        if height % block == 0:
            return block
    return min(height, 4)


class RowDFT:
    """The real-DFT matrices of one row width (a whole row, or one tile) and kernel width, as GEMM operands.

    ``forward``: ``(S, 2*bins)``, maps the ``S`` inputs of a row (``S = W``) or of a tile with its halo
    (``S = W + 2*pad``, ``halo=True``) to interleaved (real, imag) spectra.
    ``inverse``: ``(W, 2*bins)``, maps spectra back to the ``W`` outputs (a tile's start ``pad`` inputs in).
    ``taps``: ``(rx, 2*bins)``, the spectrum of each kernel tap ``dx - rx//2`` as seen by
    a cross-correlation (phase ``+2*pi*f*(dx - pad)/L``).
    """

    def __init__(
        self,
        width: int,
        kernel_width: int,
        dtype: torch.dtype,
        device: torch.device,
        length: int | None = None,
        halo: bool = False,
    ) -> None:
        pad = kernel_width // 2
        start = pad if halo else 0  # where the outputs start among the inputs
        inputs = width + 2 * start
        length = width + pad + start if length is None else length
        assert length >= width + pad + start, "a shorter circular length wraps the kernel around"
        self.length = length
        self.bins = length // 2 + 1
        freqs = torch.arange(self.bins, dtype=torch.float64, device=device)
        positions = torch.arange(inputs, dtype=torch.float64, device=device)
        phase = (2 * math.pi / length) * torch.outer(positions, freqs)
        cos, sin = torch.cos(phase), torch.sin(phase)
        self.forward = torch.stack([cos, -sin], -1).reshape(inputs, -1).to(dtype)
        cos, sin = cos[start : start + width], sin[start : start + width]
        # A real signal's spectrum is Hermitian: bins 1..L/2 stand for two, bin 0 (and
        # the Nyquist bin of an even length) for one.
        weight = torch.full((self.bins,), 2.0, dtype=torch.float64, device=device)
        weight[0] = 1.0
        if length % 2 == 0:
            weight[-1] = 1.0
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


class _Workspace:
    """Buffers that every block of rows reuses: a fresh large buffer per block costs page
    faults (on CPU as much time as the GEMM that fills it)."""

    def __init__(
        self,
        toeplitz: torch.Tensor,
        shared: torch.Tensor,
        width: int,
        tile: int,
        block: int,
        backward: bool,
        depth: int = 1,
    ) -> None:
        n, key_dim, value_dim = shared.shape
        bins, rows = toeplitz.shape[:2]  # rows = (re/im, k, i)
        columns = row_tiles(width, tile) * n * value_dim
        self.product = shared.new_empty(bins, rows, columns)  # (f, (o, k, i), (tile, N, v))
        self.spatial = shared.new_empty(tile, rows // 2 * columns)  # (x in the tile, (k, i, tile, N, v))
        self.lambdas = shared.new_empty(block, width, n, key_dim, value_dim)
        if backward:
            self.grad_lambdas = shared.new_empty(block * width * n, key_dim, value_dim)
            # Gradient of one slice's input rows, contiguous: a batched GEMM written straight
            # into the strided rows of grad_spectra falls back to one small GEMM per frequency.
            self.grad_columns = shared.new_empty(bins, toeplitz.shape[-1] // depth, columns)


def _hermitian_weight(bins: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``w_f / L``: how much each kept bin of a real signal's spectrum weighs in its inverse."""
    weight = torch.full((bins, 1), 2.0 / length, dtype=dtype, device=device)
    weight[0] = 1.0 / length
    if length % 2 == 0:
        weight[-1] = 1.0 / length
    return weight


def _fft_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # no bf16 / fp16 FFT on CPU


def inverse_rows_fft(product: torch.Tensor, width: int, length: int, out: torch.Tensor) -> torch.Tensor:
    """``out = inverse @ product`` by an inverse real FFT: product ``(2*bins, M)`` rows (f, re/im), out ``(W, M)``."""
    bins = product.shape[0] // 2
    spectrum = product.view(bins, 2, -1).permute(2, 0, 1).to(_fft_dtype(product.dtype)).contiguous()
    rows = torch.fft.irfft(torch.view_as_complex(spectrum), n=length)[:, :width]  # irfft drops DC/Nyquist imag
    return out.copy_(rows.t())


def inverse_rows_fft_adjoint(grad: torch.Tensor, length: int, out: torch.Tensor) -> torch.Tensor:
    """``out = inverse.T @ grad`` by a forward real FFT: grad ``(W, M)``, out ``(2*bins, M)``."""
    bins = out.shape[0] // 2
    spectrum = torch.view_as_real(torch.fft.rfft(grad.t().to(_fft_dtype(grad.dtype)), n=length))  # (M, f, 2)
    spectrum = spectrum * _hermitian_weight(bins, length, spectrum.dtype, spectrum.device)
    out.view(bins, 2, -1).copy_(spectrum.permute(1, 2, 0))
    return out


def _inverse_rows(inverse: torch.Tensor, product: torch.Tensor, length: int, out: torch.Tensor) -> torch.Tensor:
    """``inverse @ product``, in ``out`` or a new tensor: use what is returned."""
    if length:
        return inverse_rows_fft(product, inverse.shape[0], length, out)
    return small_times_wide(inverse, product, out=out)


def _inverse_rows_adjoint(inverse: torch.Tensor, grad: torch.Tensor, length: int, out: torch.Tensor) -> torch.Tensor:
    """``inverse.T @ grad``, in ``out`` or a new tensor: use what is returned."""
    if length:
        return inverse_rows_fft_adjoint(grad, length, out)
    return small_times_wide(inverse.t(), grad, out=out)


def _row_block_lambdas(
    toeplitz: torch.Tensor,
    spectra: torch.Tensor,
    inverse: torch.Tensor,
    shared: torch.Tensor,
    block_index: int,
    work: _Workspace,
    fft_length: int = 0,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Whole lambdas (shared part added) of one block of rows: ``(block*W*N, k, v)``, rows (row, x, N).

    Written into ``out`` (that shape, contiguous) when given, else into the workspace."""
    block, width, n, key_dim, value_dim = work.lambdas.shape
    for u, columns in enumerate(_block_columns(spectra, toeplitz, block_index * block)):
        part = toeplitz[:, :, u * columns.shape[1] : (u + 1) * columns.shape[1]]
        if u == 0:
            torch.bmm(part, columns, out=work.product)
        else:
            work.product.baddbmm_(part, columns)
    spatial = _inverse_rows(inverse, work.product.view(inverse.shape[1], -1), fft_length, work.spatial)
    # One pass: reorder (x in tile, k, i, tile, N, v) to (row, tile, x in tile, N, k, v) and add the shared lambda.
    tile = inverse.shape[0]
    spatial = spatial.view(tile, key_dim, block, row_tiles(width, tile), n, value_dim).permute(2, 3, 0, 4, 1, 5)
    target = work.lambdas if out is None else out.view(work.lambdas.shape)
    whole, rest = divmod(width, tile)
    torch.add(spatial[:, :whole], shared, out=target[:, : whole * tile].view(block, whole, tile, n, key_dim, value_dim))
    if rest:  # the last tile reaches past the map: its first columns only
        torch.add(spatial[:, whole, :rest], shared, out=target[:, whole * tile :])
    return target.view(-1, key_dim, value_dim)


def _block_columns(spectra: torch.Tensor, toeplitz: torch.Tensor, start: int) -> list[torch.Tensor]:
    """Per intra-depth slice, the input rows of the block starting at row ``start``: views ``(f, span*2, N*v)``."""
    bins, depth, _, _, columns = spectra.shape
    span = toeplitz.shape[-1] // (2 * depth)
    return [spectra[:, u, start : start + span].reshape(bins, span * 2, columns) for u in range(depth)]


def row_block_forward(
    q_rows: torch.Tensor,
    spectra: torch.Tensor,
    toeplitz: torch.Tensor,
    inverse: torch.Tensor,
    shared: torch.Tensor,
    height: int,
    width: int,
    block: int,
    length: int,
    keep_lambdas: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``y = q . (lambda_p + shared)`` one block of rows at a time (see ``RowBlockContraction``).

    Returns ``(y, lambdas)``: with ``keep_lambdas`` every block's lambdas, ``(blocks*block*W*N, k, v)``, for
    the backward (as much memory as the published layer keeps), else None."""
    n, key_dim, value_dim = shared.shape
    work = _Workspace(toeplitz, shared, width, inverse.shape[0], block, backward=False)
    out = q_rows.new_empty(q_rows.shape[0], q_rows.shape[1], value_dim)
    block_rows = block * width * n
    kept = q_rows.new_empty(-(-height // block) * block_rows, key_dim, value_dim) if keep_lambdas else None
    for index, (start, stop) in enumerate(_row_ranges(block, height, width * n)):
        into = kept[start : start + block_rows] if keep_lambdas else None  # a whole block, the last one too
        lambdas = _row_block_lambdas(toeplitz, spectra, inverse, shared, index, work, length, out=into)
        torch.bmm(q_rows[start:stop], lambdas[: stop - start], out=out[start:stop])
    return out, kept


def row_block_backward(
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
    needs: tuple[bool, bool, bool, bool] = (True, True, True, True),
    kept: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(q_rows, spectra, toeplitz, shared)`` of ``row_block_forward``; ``needs`` says which.

    ``kept``: the lambdas the forward kept (else each block's are rebuilt)."""
    n, key_dim, value_dim = shared.shape
    need_q, need_spectra, need_toeplitz, need_shared = needs
    grad_out = grad_out.contiguous()
    # Contiguous, whatever q_rows' strides (a batch of 1 makes them permuted): written in row slices.
    grad_q = q_rows.new_empty(q_rows.shape) if need_q else None
    grad_spectra = torch.zeros_like(spectra) if need_spectra else None
    depth = spectra.shape[1]
    bins, rows, slice_columns_size = toeplitz.shape[0], toeplitz.shape[1], toeplitz.shape[2] // depth
    # One contiguous gradient per intra-depth slice: a batched GEMM accumulated into a
    # column slice of grad_toeplitz (strided) falls back to one small GEMM per frequency.
    grad_toeplitz_slices = toeplitz.new_zeros(depth, bins, rows, slice_columns_size) if need_toeplitz else None
    grad_shared = torch.zeros_like(shared) if need_shared else None
    work = _Workspace(toeplitz, shared, width, inverse.shape[0], block, backward=True, depth=depth)
    for index, (start, stop) in enumerate(_row_ranges(block, height, width * n)):
        if kept is not None:
            lambdas = kept[start:stop]  # the block's rows start where its lambdas do
        else:
            lambdas = _row_block_lambdas(toeplitz, spectra, inverse, shared, index, work, length)[: stop - start]
        grad = grad_out[start:stop]
        if need_q:
            torch.bmm(grad, lambdas.transpose(1, 2), out=grad_q[start:stop])
        if not (need_spectra or need_toeplitz or need_shared):
            continue
        grad_lambdas = work.grad_lambdas
        if stop - start < grad_lambdas.shape[0]:  # a last partial block: rows past the map
            grad_lambdas.zero_()
        torch.bmm(q_rows[start:stop].transpose(1, 2), grad, out=grad_lambdas[: stop - start])
        if need_shared:
            grad_shared += grad_lambdas.view(-1, n, key_dim, value_dim).sum(0)
        if not (need_spectra or need_toeplitz):
            continue
        # Back through the reorder and the inverse DFT (the workspace's buffers are free again).
        _tile_gradient(grad_lambdas.view(block, width, n, key_dim, value_dim), inverse.shape[0], work.spatial)
        grad_product = _inverse_rows_adjoint(inverse, work.spatial, length, work.product.view(inverse.shape[1], -1))
        grad_product = grad_product.view(work.product.shape)
        columns = _block_columns(spectra, toeplitz, index * block)
        grad_columns = _block_columns(grad_spectra, toeplitz, index * block) if need_spectra else None
        for u, slice_columns in enumerate(columns):
            size = slice_columns.shape[1]
            part = slice(u * size, (u + 1) * size)
            if need_toeplitz:
                grad_toeplitz_slices[u].baddbmm_(grad_product, slice_columns.transpose(1, 2))
            if need_spectra:  # overlapping blocks read the same rows: their gradients add up
                torch.bmm(toeplitz[:, :, part].transpose(1, 2), grad_product, out=work.grad_columns)
                grad_columns[u].add_(work.grad_columns)
    grad_toeplitz = None
    if need_toeplitz:  # (u, f, rows, cols) -> (f, rows, (u, cols)), the layout of toeplitz
        grad_toeplitz = grad_toeplitz_slices.permute(1, 2, 0, 3).reshape(toeplitz.shape)
    return grad_q, grad_spectra, grad_toeplitz, grad_shared


def _tile_gradient(grad_lambdas: torch.Tensor, tile: int, out: torch.Tensor) -> None:
    """Back through the reorder of ``_row_block_lambdas``: ``grad_lambdas`` ``(block, W, N, k, v)`` into ``out``
    laid out (x in tile, k, i, tile, N, v), zero at the columns a last tile computes past the map."""
    block, width, n, key_dim, value_dim = grad_lambdas.shape
    spatial = out.view(tile, key_dim, block, row_tiles(width, tile), n, value_dim)
    whole, rest = divmod(width, tile)
    grad_tiles = grad_lambdas[:, : whole * tile].view(block, whole, tile, n, key_dim, value_dim)
    spatial[:, :, :, :whole].copy_(grad_tiles.permute(2, 4, 0, 1, 3, 5))
    if rest:
        spatial[:rest, :, :, whole].copy_(grad_lambdas[:, whole * tile :].permute(1, 3, 0, 2, 4))
        spatial[rest:, :, :, whole].zero_()


class RowBlockContraction(torch.autograd.Function):
    """``y = q . (lambda_p + shared)`` computed one block of rows at a time.

    The lambdas are the largest tensor of the layer (``k`` times the values). Built and
    used block by block, they stay in cache. Without grad nothing of that size is allocated;
    with grad (and ``KEEP_LAMBDAS_FOR_BACKWARD``) each block's lambdas are written into one
    tensor kept for the backward, as the published layer keeps its own; otherwise the backward
    rebuilds them block by block, less memory at the cost of one more forward GEMM pass.

    Inputs: ``q_rows (H*W*N, heads, k)`` ordered (row, x, N); ``spectra`` and
    ``toeplitz`` as built in ``lambda_output_spectral``; ``inverse`` the inverse DFT
    matrix (constant); ``shared`` ``(N, k, v)``, added to every position's lambda (content
    lambda and bias). Returns ``(H*W*N, heads, v)``.
    """

    @staticmethod
    def forward(ctx, q_rows, spectra, toeplitz, inverse, shared, height: int, width: int, block: int, length: int):
        keep = any(ctx.needs_input_grad[:5]) and keeps_lambdas(q_rows, shared.shape[-1])
        out, kept = row_block_forward(q_rows, spectra, toeplitz, inverse, shared, height, width, block, length, keep)
        ctx.save_for_backward(q_rows, spectra, toeplitz, inverse, shared, kept)
        ctx.dims = (height, width, block, length)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q_rows, spectra, toeplitz, inverse, shared, kept = ctx.saved_tensors
        need_q, need_spectra, need_toeplitz, _, need_shared = ctx.needs_input_grad[:5]
        needs = (need_q, need_spectra, need_toeplitz, need_shared)
        grad_q, grad_spectra, grad_toeplitz, grad_shared = row_block_backward(
            grad_out, q_rows, spectra, toeplitz, inverse, shared, *ctx.dims, needs=needs, kept=kept
        )
        return grad_q, grad_spectra, grad_toeplitz, None, grad_shared, None, None, None, None


def _row_ranges(block: int, height: int, row_size: int) -> list[tuple[int, int]]:
    """Flat ``(start, stop)`` of each block's rows in the (row, x, N) order; the last one cut at ``height``."""
    return [(start * row_size, min(start + block, height) * row_size) for start in range(0, height, block)]


class SpectralOperands:
    """What both ways of running the spectral formulation start from (see ``lambda_output_spectral``)."""

    def __init__(self, queries, values, content, weight, bias, height: int, width: int) -> None:
        n, depth, value_dim, positions = values.shape
        key_dim, r = weight.shape[0], weight.shape[-1]
        heads = queries.shape[1]
        kernel = reachable_taps(weight.reshape(key_dim, depth, r, r), height, width)
        ry, rx = kernel.shape[-2:]
        self.block = row_block(height)
        self.blocks = -(-height // self.block)
        self.span = self.block + ry - 1
        tile = row_tile(width, rx, self.span)
        whole_rows, pad_x = tile == width, rx // 2
        tiles = row_tiles(width, tile)
        length = circular_length(width, rx) if whole_rows else None
        dft = RowDFT(tile, rx, values.dtype, values.device, length, halo=not whole_rows)
        self.fft_length = length if whole_rows and uses_fft(width) else 0
        bins, pad_y = dft.bins, ry // 2
        # Row spectra of every value map, laid out (f, u, row, re/im, (tile, N, v)) with zero rows above
        # and below the map, so that the input rows of each output block are a plain view.
        rows = values.reshape(n, depth, value_dim, height, width)
        if self.fft_length:
            spectra = torch.view_as_real(torch.fft.rfft(rows.to(_fft_dtype(rows.dtype)), n=length)).to(rows.dtype)
        elif not whole_rows:  # each tile's inputs with their halo: overlapping windows of the zero-padded row
            padded = F.pad(rows, (pad_x, pad_x + tiles * tile - width))
            windows = padded.unfold(-1, tile + 2 * pad_x, tile).reshape(-1, tile + 2 * pad_x)  # one copy, one GEMM
            spectra = windows @ dft.forward
        else:
            spectra = rows @ dft.forward
        spectra = spectra.view(n, depth, value_dim, height, tiles, bins, 2).permute(5, 1, 3, 6, 4, 0, 2)
        spectra = spectra.reshape(bins, depth, height, 2, tiles * n * value_dim)
        self.spectra = F.pad(spectra, (0, 0, 0, 0, pad_y, self.blocks * self.block + ry - 1 - height - pad_y))
        self.toeplitz = column_toeplitz((kernel @ dft.taps).reshape(key_dim, depth, ry, bins, 2), self.block)
        self.inverse = dft.inverse
        self.q_rows = queries.permute(3, 0, 1, 2).reshape(positions * n, heads, key_dim)
        self.shared = shared_lambda(content, bias)
        self.output_shape = (positions, n, heads, value_dim)


def lambda_output_spectral(
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Layer output, same signature and result as ``lambda_output_reference``.

    Eager kernel: lambdas built and used one block of rows at a time, in reused buffers
    (``RowBlockContraction``). Graph capture (compile, export, tracing) cannot follow its
    ``out=`` writes; ``lambda_output_spectral_functional`` is the same math for those.
    """
    return row_kernel_output(RowBlockContraction.apply, queries, values, content, weight, bias, height, width)


def row_kernel_output(kernel, queries, values, content, weight, bias, height: int, width: int) -> torch.Tensor:
    """The layer output through ``kernel``, a callable with ``row_block_forward``'s arguments (the autograd
    function in eager mode, the custom op under compile): operands prepared once, the output laid out once."""
    ops = SpectralOperands(queries, values, content, weight, bias, height, width)
    out = kernel(
        ops.q_rows, ops.spectra, ops.toeplitz, ops.inverse, ops.shared, height, width, ops.block, ops.fft_length
    )
    return out.view(ops.output_shape).permute(1, 2, 3, 0)


def lambda_output_spectral_functional(
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """The spectral formulation as plain tensor ops, all row blocks at once; autograd does the backward.

    Same products as ``RowBlockContraction`` but no buffers, no ``out=`` and no custom
    backward, so ``torch.compile``, ``torch.export``, ONNX export and ``torch.jit.trace``
    capture it. It stores the whole lambdas (``k`` times the values) for the backward.
    """
    ops = SpectralOperands(queries, values, content, weight, bias, height, width)
    bins, depth, _, _, columns = ops.spectra.shape
    n, key_dim, value_dim = ops.shared.shape
    block, blocks = ops.block, ops.blocks
    # windows[f, u, b, c, nv, j] = spectra[f, u, b*block + j, c, nv]: every block's input rows.
    windows = ops.spectra.unfold(2, ops.span, block)
    stacked = windows.permute(0, 1, 5, 3, 2, 4).reshape(bins, depth * ops.span * 2, blocks * columns)
    product = torch.bmm(ops.toeplitz, stacked)  # (f, (o, k, i), (b, N, v))
    spatial = ops.inverse @ product.reshape(ops.inverse.shape[1], -1)  # (x in tile, (k, i, b, tile, N, v))
    tile = ops.inverse.shape[0]
    tiles = row_tiles(width, tile)
    spatial = spatial.reshape(tile, key_dim, block, blocks, tiles, n, value_dim)
    spatial = spatial.permute(3, 2, 4, 0, 5, 1, 6)  # (b, i, tile, x in tile, N, k, v)
    lambdas = spatial.reshape(blocks * block, tiles * tile, n, key_dim, value_dim)[:height, :width] + ops.shared
    out = torch.bmm(ops.q_rows, lambdas.reshape(-1, key_dim, value_dim))
    return out.view(ops.output_shape).permute(1, 2, 3, 0)
