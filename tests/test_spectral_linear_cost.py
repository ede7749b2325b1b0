"""The spectral formulation's cost per position stays bounded with the map, and wide rows stay exact.

Rows of width >= ``FFT_MIN_WIDTH`` use a real FFT instead of the dense DFT GEMM (below it the
GEMM is faster, measured: see ``spectral.FFT_MIN_WIDTH``); the
exactness tests force that switch on at small widths too (so they run fast) and check it at
a real wide map, in float64 against the published formulation: outputs and all gradients.
"""

from __future__ import annotations

import pytest
import torch
from test_lambda_fast import assert_same_function, rel, twin_layers

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
    """What the FFT path buys when it is on (here from width 96): large maps cost no more per position."""
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 96)
    at_56 = spectral_macs_per_position(56, 56)
    assert spectral_macs_per_position(side, side) <= at_56, (side, spectral_macs_per_position(side, side), at_56)


def test_default_macs_per_position_bounded_for_any_width():
    """DFT GEMM rows up to FFT_MIN_WIDTH (faster there, measured), FFT rows beyond: no width up to 1024
    costs more per position than the widest GEMM row."""
    widest_gemm_row = spectral_macs_per_position(56, spectral.FFT_MIN_WIDTH - 1)
    assert max(spectral_macs_per_position(56, w) for w in range(56, 1025, 7)) <= widest_gemm_row
    assert spectral_macs_per_position(56, spectral.FFT_MIN_WIDTH) < widest_gemm_row


def test_dense_dft_cost_would_grow_with_the_width(monkeypatch):
    """The model sees the problem it fixes: with the FFT switched off, 160 costs more than 56."""
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 10**9)
    assert spectral_macs_per_position(160, 160) > 1.3 * spectral_macs_per_position(56, 56)


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
    reference, fast = twin_layers(channels, stride, "spectral", torch.float64, intra_depth=intra_depth)
    assert_same_function(reference, fast, torch.randn(2, channels, height, width, dtype=torch.float64), 1e-10)


@pytest.mark.parametrize(("stride", "width_past_the_switch"), [(1, 1), (2, 17)])
def test_wide_map_uses_fft_and_is_exact(stride, width_past_the_switch):
    width = spectral.FFT_MIN_WIDTH + width_past_the_switch
    assert spectral.uses_fft(width) and not spectral.uses_fft(spectral.FFT_MIN_WIDTH - 1)
    reference, fast = twin_layers(8, stride, "spectral", torch.float64)
    assert_same_function(reference, fast, torch.randn(1, 8, 4, width, dtype=torch.float64), 1e-10)


def test_functional_equals_eager_on_fft_rows(monkeypatch):
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 1)
    torch.manual_seed(0)
    h, w = 7, 11
    args = (
        torch.randn(2, 2, 4, h * w, dtype=torch.float64),
        torch.randn(2, 1, 3, h * w, dtype=torch.float64),
        torch.randn(2, 4, 3, dtype=torch.float64),
        torch.randn(4, 1, 1, 23, 23, dtype=torch.float64),
        torch.randn(4, dtype=torch.float64),
    )
    eager = lambda_output_spectral(*args, h, w)
    assert rel(lambda_output_spectral_functional(*args, h, w), eager) < 1e-12


def test_fft_rows_gradcheck(monkeypatch):
    monkeypatch.setattr(spectral, "FFT_MIN_WIDTH", 1)
    torch.manual_seed(0)
    h, w = 4, 5
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
            fft_rows = fast(x).float()
    assert torch.isfinite(fft_rows).all()
    assert rel(fft_rows, expected) < 2 * rel(gemm_rows, expected) + 1e-3
