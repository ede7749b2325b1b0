"""The spectral formulation's cost per position stays bounded with the map, and wide rows stay exact.

Rows of width >= ``TILE_MIN_WIDTH`` are cut into tiles (overlap-save, ``spectral.row_tile``);
with tiles switched off, whole rows of width >= ``FFT_MIN_WIDTH`` use a real FFT instead of the
dense DFT GEMM. The exactness tests force tiles and the FFT at small widths too (so they run
fast) and check both at real wide maps, in float64 against the published formulation: outputs
and all gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_lambda_fast import assert_same_function, rel, twin_layers
from test_lambda_precision import output_and_input_grad

import lambda_repro.models.lambda_formulations.spectral as spectral
from lambda_repro.models.lambda_formulations.spectral import (
    RowDFT,
    fft_length,
    inverse_rows_fft,
    inverse_rows_fft_adjoint,
    lambda_output_spectral,
    lambda_output_spectral_functional,
)
from lambda_repro.models.lambda_formulations.spectral_cost import spectral_macs_per_position


@pytest.mark.parametrize("side", [112, 160])
def test_fft_rows_keep_macs_per_position_at_large_maps_not_above_56x56(monkeypatch, side):
    """What the FFT path buys when it is on for whole rows (here from width 96): large maps cost no more per
    position, by this count (it runs slower than the DFT GEMM, measured, hence tiles first)."""
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 96)
    monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    at_56 = spectral_macs_per_position(56, 56)
    assert spectral_macs_per_position(side, side) <= at_56, (side, spectral_macs_per_position(side, side), at_56)


def test_dense_dft_cost_would_grow_with_the_width(monkeypatch):
    """The model sees the problem tiles fix: whole rows by the DFT GEMM, 160 costs more than 56."""
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 10**9)
    monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    assert spectral_macs_per_position(160, 160) > 1.3 * spectral_macs_per_position(56, 56)


@pytest.mark.parametrize(("side", "tile"), [(28, 28), (56, 56), (160, 160), (224, 32), (320, 32)])
def test_row_tile_keeps_whole_rows_below_the_switch_and_tiles_wider_ones(side, tile):
    assert spectral.TILE_MIN_WIDTH == 192
    assert spectral.row_tile(side, 23, spectral.row_block(side) + 22) == tile


def test_tiled_rows_cost_per_position_stays_near_56x56_at_any_width():
    """Tiles bound the row DFT's cost: no width from the switch to 1024 costs more than 1.15x the 56x56 cost per
    position (a whole row gets its zero padding for free, a tile pays for its halo), against 8.3x at 1024 for
    whole rows."""
    at_56 = spectral_macs_per_position(56, 56)
    widths = range(spectral.TILE_MIN_WIDTH, 1025)
    worst = max(widths, key=lambda width: spectral_macs_per_position(56, width))
    assert spectral_macs_per_position(56, worst) <= 1.15 * at_56, worst
    assert spectral_macs_per_position(224, 224) <= 1.15 * at_56


def test_whole_rows_would_cost_more_and_more(monkeypatch):
    monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 10**9)
    assert spectral_macs_per_position(56, 1024) > 8 * spectral_macs_per_position(56, 56)


@pytest.mark.parametrize(
    ("channels", "stride", "height", "width", "intra_depth", "tile"),
    [
        (8, 1, 5, 10, 1, 5),
        (8, 2, 6, 12, 2, 4),  # stride 2, intra-depth 2
        (8, 1, 9, 30, 1, 3),  # tiles narrower than the kernel's halo
        (8, 1, 4, 24, 1, 12),
        (8, 1, 5, 11, 1, 4),  # a last tile past the map's edge
        (8, 2, 6, 13, 2, 5),
    ],
)
def test_tiled_rows_same_function_and_gradients_float64(
    monkeypatch, channels, stride, height, width, intra_depth, tile
):
    monkeypatch.setattr(spectral, "row_tile", lambda w, rx, span: tile)
    built = record_row_dfts(monkeypatch)
    reference, fast = twin_layers(channels, stride, "spectral", torch.float64, intra_depth=intra_depth)
    assert_same_function(reference, fast, torch.randn(2, channels, height, width, dtype=torch.float64), 1e-10)
    assert built and all(dft.inverse.shape[0] == tile and dft.forward.shape[0] > tile for dft in built)


def record_row_dfts(monkeypatch) -> list:
    """Every ``RowDFT`` the spectral formulation builds from now on (which rows it ran)."""
    built = []

    class Recorded(spectral.RowDFT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(spectral, "RowDFT", Recorded)
    return built


def test_wide_map_takes_tiles_and_is_exact(monkeypatch):
    """A real wide map, the default rule: 200 columns of a 4-row map (a 7-row column kernel) in 8 tiles of 25,
    against the published layer."""
    built = record_row_dfts(monkeypatch)
    reference, fast = twin_layers(8, 1, "spectral", torch.float64)
    assert_same_function(reference, fast, torch.randn(1, 8, 4, 200, dtype=torch.float64), 1e-10)
    assert built and all(dft.inverse.shape == (25, 2 * ((25 + 22) // 2 + 1)) for dft in built)


@pytest.mark.parametrize("minimum", [1, 7, 67, 123, 171, 1021])
def test_fft_length_is_5_smooth_and_minimal(minimum):
    length = fft_length(minimum)
    assert length >= minimum
    for candidate in range(minimum, length + 1):
        rest = candidate
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        assert (rest == 1) == (candidate == length)


@pytest.mark.parametrize(("width", "length"), [(9, 20), (13, 27), (40, 64)])
def test_fft_inverse_and_adjoint_equal_the_dft_matrices(width, length):
    dft = RowDFT(width, 23, torch.float64, torch.device("cpu"), length)
    product = torch.randn(2 * dft.bins, 5, dtype=torch.float64)
    grad = torch.randn(width, 5, dtype=torch.float64)
    rows = inverse_rows_fft(product, width, length, torch.empty(width, 5, dtype=torch.float64))
    assert rel(rows, dft.inverse @ product) < 1e-12
    adjoint = inverse_rows_fft_adjoint(grad, length, torch.empty(2 * dft.bins, 5, dtype=torch.float64))
    assert rel(adjoint, dft.inverse.t() @ grad) < 1e-12


@pytest.mark.parametrize(
    ("channels", "stride", "height", "width", "intra_depth"),
    [
        (8, 1, 5, 9, 1),  # odd width
        (8, 2, 6, 13, 2),  # stride 2, intra-depth 2
        (8, 1, 9, 30, 1),  # wider than the kernel
    ],
)
def test_fft_rows_same_function_and_gradients_float64(monkeypatch, channels, stride, height, width, intra_depth):
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 1)
    monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    reference, fast = twin_layers(channels, stride, "spectral", torch.float64, intra_depth=intra_depth)
    assert_same_function(reference, fast, torch.randn(2, channels, height, width, dtype=torch.float64), 1e-10)


@pytest.mark.parametrize(("stride", "width_past_the_switch"), [(1, 1), (2, 17)])
def test_wide_map_uses_fft_and_is_exact(monkeypatch, stride, width_past_the_switch):
    """Whole rows (tiles off) past the switch take the FFT."""
    monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    width = spectral.FFT_MIN_WIDTH + width_past_the_switch
    assert spectral.uses_fft(width) and not spectral.uses_fft(spectral.FFT_MIN_WIDTH - 1)
    reference, fast = twin_layers(8, stride, "spectral", torch.float64)
    assert_same_function(reference, fast, torch.randn(1, 8, 4, width, dtype=torch.float64), 1e-10)


def force_rows(monkeypatch, rows: str, tile: int | None = None) -> None:
    """Force whole rows by the real FFT (``"fft"``) or tiles of ``tile`` outputs (``"tiles"``) at any width."""
    if rows == "fft":
        monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 1)
        monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
    else:
        monkeypatch.setattr(spectral, "row_tile", lambda w, rx, span: tile)


@pytest.mark.parametrize(("rows", "tile", "h", "w"), [("fft", None, 7, 11), ("tiles", 5, 7, 15)])
def test_functional_equals_eager(monkeypatch, rows, tile, h, w):
    force_rows(monkeypatch, rows, tile)
    torch.manual_seed(0)
    args = (
        torch.randn(2, 2, 4, h * w, dtype=torch.float64),
        torch.randn(2, 1, 3, h * w, dtype=torch.float64),
        torch.randn(2, 4, 3, dtype=torch.float64),
        torch.randn(4, 1, 1, 23, 23, dtype=torch.float64),
        torch.randn(4, dtype=torch.float64),
    )
    eager = lambda_output_spectral(*args, h, w)
    assert rel(lambda_output_spectral_functional(*args, h, w), eager) < 1e-12


@pytest.mark.parametrize(("rows", "tile", "h", "w"), [("fft", None, 4, 5), ("tiles", 2, 4, 6)])
def test_row_kernel_gradcheck(monkeypatch, rows, tile, h, w):
    force_rows(monkeypatch, rows, tile)
    torch.manual_seed(0)
    args = (
        torch.randn(2, 2, 3, h * w, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2, 2, h * w, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 2, 1, 5, 5, dtype=torch.float64, requires_grad=True),
        torch.randn(3, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda q, v, c, wt, b: lambda_output_spectral(q, v, c, wt, b, h, w), args)


def test_fft_rows_under_bf16_autocast_are_close(monkeypatch):
    """bf16 autocast: the FFT runs in float32 (none in bf16 on CPU); as close as the GEMM rows."""
    torch.manual_seed(0)
    reference, fast = twin_layers(16, 1, "spectral", torch.float32)
    x = torch.randn(2, 16, 6, 20)
    with torch.no_grad():
        expected = reference(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gemm_rows = fast(x).float()
            monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 1)
            monkeypatch.setattr(spectral, "TILE_MIN_WIDTH", 10**9)
            fft_rows = fast(x).float()
    assert torch.isfinite(fft_rows).all()
    assert rel(fft_rows, expected) < 2 * rel(gemm_rows, expected) + 1e-3


def test_tiled_rows_under_bf16_autocast_are_as_accurate_as_the_reference(monkeypatch):
    """bf16 autocast with tiles forced on: output and input gradient as close to float64 as the published layer's."""
    torch.manual_seed(0)
    reference, tiled = twin_layers(16, 1, "spectral", torch.float32)
    exact = copy.deepcopy(reference).double()
    force_rows(monkeypatch, "tiles", 7)
    x = torch.randn(2, 16, 6, 30)
    grad = torch.randn(2, 16, 6, 30, dtype=torch.float64)
    expected_out, expected_grad = output_and_input_grad(exact, x.double(), grad)
    ref_out, ref_grad = output_and_input_grad(reference, x, grad, torch.bfloat16)
    tiled_out, tiled_grad = output_and_input_grad(tiled, x, grad, torch.bfloat16)
    assert 1e-3 < rel(ref_out, expected_out) < 3e-2  # bf16 rounding really happened
    assert rel(tiled_out, expected_out) < 1.5 * rel(ref_out, expected_out)
    assert rel(tiled_grad, expected_grad) < 1.5 * rel(ref_grad, expected_grad)
