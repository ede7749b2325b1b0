"""``small_times_wide``: the row-DFT product on oneDNN where it can, on ``mm`` elsewhere, the same values."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lambda_repro.models.lambda_formulations.spectral import lambda_output_spectral
from lambda_repro.models.lambda_formulations.wide_product import small_times_wide, uses_onednn
from tests.test_spectral_gemm_calls import spectral_inputs

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


class OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__ if hasattr(func, "__name__") else str(func))
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def operands(dtype=torch.float32, rows=56, depth=68, columns=2048):
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(rows, depth, generator=generator, dtype=torch.float64)
    wide = torch.randn(depth, columns, generator=generator, dtype=torch.float64)
    return small, wide, small.to(dtype), wide.to(dtype)


@needs_onednn
def test_float32_product_matches_float64_as_closely_as_mm():
    small64, wide64, small, wide = operands()
    exact = small64 @ wide64
    with torch.no_grad():
        assert uses_onednn(small, wide)
        fast = small_times_wide(small, wide)
    mkl = torch.mm(small, wide)
    assert fast.shape == (56, 2048) and fast.dtype == torch.float32
    fast_error = (fast.double() - exact).abs().max().item()
    mm_error = (mkl.double() - exact).abs().max().item()
    assert fast_error < 1e-4 and fast_error < 4 * mm_error + 1e-6


@needs_onednn
def test_transposed_small_operand_as_in_the_adjoint():
    small64, _, small, _ = operands()
    grad64 = torch.randn(56, 1000, dtype=torch.float64)
    with torch.no_grad():
        fast = small_times_wide(small.t(), grad64.float())
    torch.testing.assert_close(fast.double(), small64.t() @ grad64, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_stay_on_mm_and_write_out(dtype):
    small64, wide64, small, wide = operands(dtype)
    assert not uses_onednn(small, wide)
    out = torch.empty(56, 2048, dtype=dtype)
    result = small_times_wide(small, wide, out=out)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(
        result.double(),
        small64.to(dtype).double() @ wide64.to(dtype).double(),
        **({"rtol": 0, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 2e-2, "atol": 1.0}),
    )


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's flags() restoring its defaults
def test_onednn_switched_off_by_the_user_is_respected():
    _, _, small, wide = operands()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert not uses_onednn(small, wide)
        out = torch.empty(56, 2048)
        assert small_times_wide(small, wide, out=out).data_ptr() == out.data_ptr()
    with torch.no_grad():
        assert uses_onednn(small, wide)


def test_autograd_inputs_stay_on_mm_and_keep_their_gradient():
    _, _, small, wide = operands()
    wide.requires_grad_(True)
    assert not uses_onednn(small, wide)
    result = small_times_wide(small, wide)
    result.sum().backward()
    torch.testing.assert_close(wide.grad, small.sum(0, keepdim=True).t().expand(-1, 2048))


@needs_onednn
def test_spectral_inference_runs_its_inverse_dft_on_onednn_and_stays_exact():
    h = w = 56
    inputs = spectral_inputs(h, w, 1, dtype=torch.float64)
    exact = lambda_output_spectral(*inputs, h, w).detach()
    with torch.no_grad(), OpNames() as seen:
        fast = lambda_output_spectral(*(t.float() for t in inputs), h, w)
    assert "mkldnn._linear_pointwise" in seen.names
    scale = exact.abs().max().item()
    assert (fast.double() - exact).abs().max().item() < 2e-5 * scale
