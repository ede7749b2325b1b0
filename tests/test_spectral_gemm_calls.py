"""The spectral kernel runs each batched product as one GEMM call, never one per frequency.

``torch.bmm`` / ``baddbmm_`` on CPU reach MKL's batched GEMM only when the output is
contiguous (and each operand matrix is contiguous or transposed); otherwise aten loops over
the batch, one small GEMM per frequency. Two checks: every product the forward and backward
dispatch meets that condition, and, where torch is built with MKL, the GEMM calls MKL itself
logs (``MKL_VERBOSE``) do not grow with the number of frequencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lambda_repro.models.lambda_formulations.spectral import lambda_output_spectral

PRODUCTS = {"mm", "bmm", "baddbmm", "baddbmm_", "addmm", "addmm_"}


def spectral_inputs(height: int, width: int, depth: int, dtype=torch.float32):
    torch.manual_seed(0)
    return (
        torch.randn(2, 4, 16, height * width, dtype=dtype, requires_grad=True),
        torch.randn(2, depth, 8, height * width, dtype=dtype, requires_grad=True),
        torch.randn(2, 16, 8, dtype=dtype, requires_grad=True),
        torch.randn(16, depth, 1, 23, 23, dtype=dtype, requires_grad=True),
        torch.randn(16, dtype=dtype, requires_grad=True),
    )


def item_is_gemm_operand(t: torch.Tensor) -> bool:
    """Each matrix of a batch is row- or column-major (what a batched GEMM can read)."""
    rows, cols = t.stride()[-2:]
    return (cols == 1 and rows >= t.shape[-1]) or (rows == 1 and cols >= t.shape[-2]) or t.numel() <= 1


class ProductRecorder(TorchDispatchMode):
    """Records every matrix product dispatched: its name and whether it can be one GEMM call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        if name in PRODUCTS:
            operands = [a for a in args if isinstance(a, torch.Tensor)]
            written = kwargs.get("out", operands[0] if name.endswith("_") else None)
            batched = name.startswith(("bmm", "baddbmm"))
            ok = all(item_is_gemm_operand(t) for t in operands[-2:])
            if batched and written is not None:
                ok = ok and written.is_contiguous()
            self.calls.append((name, ok))
        return func(*args, **kwargs)


def backward_products(height: int, width: int, depth: int) -> list[tuple[str, bool]]:
    inputs = spectral_inputs(height, width, depth)
    out = lambda_output_spectral(*inputs, height, width)
    grad = torch.randn_like(out)
    with ProductRecorder() as recorder:
        out.backward(grad)
    return recorder.calls


@pytest.mark.parametrize("depth", [1, 2])
def test_every_backward_product_is_one_gemm_call(depth):
    calls = backward_products(8, 40, depth)
    assert calls, "no product recorded"
    assert [c for c in calls if not c[1]] == [], calls


@pytest.mark.parametrize("depth", [1, 2])
def test_backward_product_count_does_not_grow_with_frequencies(depth):
    """Same rows (2 blocks of 4), 10 vs 26 frequency bins: the same number of product calls."""
    narrow, wide = backward_products(8, 9, depth), backward_products(8, 40, depth)
    assert len(narrow) == len(wide) <= 2 * (6 + 3 * depth), (narrow, wide)  # per block: a handful


def test_forward_products_are_gemm_calls():
    inputs = spectral_inputs(8, 40, 2)
    with ProductRecorder() as recorder:
        lambda_output_spectral(*inputs, 8, 40)
    assert recorder.calls and all(ok for _, ok in recorder.calls), recorder.calls


MKL_COUNT = """
import json, sys, torch
from tests.test_spectral_gemm_calls import spectral_inputs
from lambda_repro.models.lambda_formulations.spectral import lambda_output_spectral
torch.set_num_threads(1)
for height, width, depth in json.loads(sys.argv[1]):
    inputs = spectral_inputs(height, width, depth)
    out = lambda_output_spectral(*inputs, height, width)
    grad = torch.randn_like(out)
    print("CASE", height, width, depth, flush=True)
    out.backward(grad)
    print("END", flush=True)
"""


def mkl_backward_gemm_calls(cases: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """GEMM calls MKL logs during each backward (``MKL_VERBOSE=1``), in a fresh process."""
    env = dict(os.environ, MKL_VERBOSE="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", MKL_COUNT, json.dumps(cases)],
        capture_output=True, text=True, env=env, cwd=root, timeout=600, check=True,
    )  # fmt: skip
    counts, case = {}, None
    for line in result.stdout.splitlines():
        if line.startswith("CASE"):
            case = tuple(int(x) for x in line.split()[1:])
            counts[case] = 0
        elif line.startswith("END"):
            case = None
        elif case is not None and line.startswith("MKL_VERBOSE") and "GEMM" in line.split()[1]:
            counts[case] += 1
    return counts


def test_mkl_gemm_calls_per_backward_do_not_grow_with_frequencies():
    if not torch.backends.mkl.is_available():
        pytest.skip("torch is not built with MKL")
    cases = [(8, 9, 1), (8, 40, 1), (8, 9, 2), (8, 40, 2)]
    counts = mkl_backward_gemm_calls(cases)
    if not any(counts.values()):
        pytest.skip("this MKL logs nothing under MKL_VERBOSE")
    for depth in (1, 2):
        narrow, wide = counts[(8, 9, depth)], counts[(8, 40, depth)]
        # bins: 10 (narrow) and 26 (wide); a per-frequency fallback adds >= 26 calls per block.
        assert narrow == wide < 26, counts
