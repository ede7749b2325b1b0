"""Multiply-adds per output position of the spectral formulation: a cost model, not a timing.

Counts the products of ``spectral.py`` as it runs for a map of ``height x width``: the
row transform of the values, the block-Toeplitz column step, the inverse row transform and
the contraction with the queries. A dense DFT GEMM over a whole row costs ``2*bins`` per
transformed row entry (``bins ~ W/2``, so it grows with the width); over rows cut in tiles of
``T`` outputs (``spectral.row_tile``) ``bins ~ T/2 + r//2``, whatever the width. A real FFT of
length ``L`` is counted as a radix-2 one, ``L*log2(L/2) + 2L`` multiply-adds per row (mixed
radices cost about the same), i.e. ``O(log W)`` per entry.
"""

from __future__ import annotations

import math

from lambda_repro.models.lambda_formulations.spectral import circular_length, row_block, row_tile, row_tiles, uses_fft


def real_fft_macs(length: int) -> float:
    """Multiply-adds of one real FFT of ``length`` (a complex FFT of half the length plus a split)."""
    return length * math.log2(max(length / 2, 1)) + 2 * length


def spectral_macs_per_position(
    height: int,
    width: int,
    key_dim: int = 16,
    value_dim: int = 16,
    heads: int = 4,
    depth: int = 1,
    context_size: int = 23,
) -> float:
    """Multiply-adds of the spectral position term (and the query contraction) per output position."""
    ry = min(context_size, 2 * height - 1)
    rx = min(context_size, 2 * width - 1)
    span = row_block(height) + ry - 1
    tile = row_tile(width, rx, span)
    whole_rows = tile == width
    length = circular_length(width, rx) if whole_rows else tile + 2 * (rx // 2)
    bins = length // 2 + 1
    # One transformed row entry (per position): dense DFT columns, or the FFT shared by a row.
    fft = whole_rows and uses_fft(width)
    per_entry = real_fft_macs(length) / width if fft else 2 * bins
    inputs_per_output = 1 if whole_rows else (tile + 2 * (rx // 2)) / tile  # a tile transforms its halo too
    computed = row_tiles(width, tile) * tile / width  # a last tile past the edge computes dropped columns
    forward = depth * value_dim * per_entry * inputs_per_output * computed
    column = depth * key_dim * value_dim * 4 * span * bins / tile * computed  # complex taps as 2x2 real blocks
    inverse = key_dim * value_dim * per_entry * computed
    contraction = heads * key_dim * value_dim
    return forward + column + inverse + contraction
