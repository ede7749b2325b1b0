"""Mixed precision: bf16 GEMMs as accurate as the published formulation under the same autocast; fp16 finite.

Errors are measured against the float64 reference, per layer shape of Lambda-ResNet-50
(batch 2). Measured here (relative error of the output under CPU bf16 autocast, reference /
fast): 56x56 4.1e-3 / 4.6e-3, 28x28 s2 3.5e-3 / 3.8e-3, 14x14 3.6e-3 / 3.7e-3, 7x7 4.6e-3 /
4.8e-3: the fast path stays within 1.25x of the reference's own error.
"""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import LambdaLayer
from lambda_repro.models.lambda_formulations import chooser


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


def layer_twins(channels: int, stride: int, implementation: str) -> tuple[LambdaLayer, LambdaLayer]:
    torch.manual_seed(0)
    reference = LambdaLayer(channels, stride, implementation="reference")
    with torch.no_grad():
        for p in reference.parameters():
            if p.dim() == 1:
                p.normal_()
    other = LambdaLayer(channels, stride, implementation=implementation)
    other.load_state_dict(reference.state_dict())
    return reference, other


def output_and_input_grad(layer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, dtype=None):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        out = layer(x)
    out.backward(grad.to(out.dtype))
    return out.detach(), x.grad


@pytest.mark.parametrize(
    ("channels", "stride", "side"),
    [(64, 1, 56), (128, 2, 28), (256, 1, 14), (512, 1, 7)],
    ids=["56x56", "28x28-s2", "14x14", "7x7"],
)
def test_bf16_autocast_as_accurate_as_the_reference_under_the_same_autocast(channels, stride, side):
    reference, fast = layer_twins(channels, stride, "auto")
    exact = LambdaLayer(channels, stride, implementation="reference").double()
    exact.load_state_dict(reference.state_dict())
    x = torch.randn(2, channels, side, side)
    grad = torch.randn(exact(x.double()).shape, dtype=torch.float64)
    expected_out, expected_grad = output_and_input_grad(exact, x.double(), grad)
    ref_out, ref_grad = output_and_input_grad(reference, x, grad, torch.bfloat16)
    fast_out, fast_grad = output_and_input_grad(fast, x, grad, torch.bfloat16)
    assert fast_out.dtype == ref_out.dtype
    ref_error, fast_error = rel(ref_out, expected_out), rel(fast_out, expected_out)
    assert 1e-3 < ref_error < 1e-2  # bf16 rounding really happened
    assert fast_error < 1.25 * ref_error, (fast_error, ref_error)
    assert rel(fast_grad, expected_grad) < 1.5 * rel(ref_grad, expected_grad)


def test_fast_formulations_compute_in_bf16_under_bf16_autocast_and_fp32_under_fp16(monkeypatch):
    seen = []
    spectral = chooser.FORMULATIONS["spectral"]

    def recording(queries, *args):
        seen.append(queries.dtype)
        return spectral(queries, *args)

    monkeypatch.setitem(chooser.FORMULATIONS, "spectral", recording)
    layer = LambdaLayer(16, implementation="spectral")
    x = torch.randn(2, 16, 9, 8)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            layer(x)
    layer(x)
    assert seen == [torch.bfloat16, torch.float32, torch.float32]


@pytest.mark.parametrize("implementation", ["dense", "spectral", "auto"])
def test_fp16_autocast_stays_finite_and_accurate_with_large_lambdas(implementation):
    """Position lambdas in the thousands (sums of 529 taps): fp32 accumulation keeps fp16 free of inf / NaN."""
    reference, fast = layer_twins(64, 1, implementation)
    with torch.no_grad():
        for layer in (reference, fast):
            layer.lambda_conv.weight.mul_(100.0)
    x = torch.randn(2, 64, 24, 24)
    with torch.no_grad():
        expected = reference(x)
        with torch.autocast("cpu", dtype=torch.float16):
            fast_out = fast(x)
    assert expected.abs().max() > 1000  # large, yet representable in fp16
    assert torch.isfinite(fast_out).all()
    assert rel(fast_out, expected.double()) < 1e-2


def test_configure_cuda_matmul_sets_both_tf32_flags_and_returns_the_old_ones():
    from lambda_repro.models.math_mode import configure_cuda_matmul

    before = configure_cuda_matmul(True)
    try:
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert configure_cuda_matmul(False) == {"matmul": True, "cudnn": True}
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        configure_cuda_matmul(before["matmul"])
        torch.backends.cudnn.allow_tf32 = before["cudnn"]


def test_importing_the_models_leaves_the_math_mode_alone():
    import subprocess
    import sys

    code = (
        "import torch; before = torch.backends.cuda.matmul.allow_tf32; "
        "import lambda_repro.models, lambda_repro.models.math_mode; "
        "assert torch.backends.cuda.matmul.allow_tf32 == before; print(before)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
