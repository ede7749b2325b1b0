"""The benchmark-only local self-attention (``mhsa-local7x7`` in tests/benchmarks) against a naive reference:
``scaled_dot_product_attention`` over every position of the map with a boolean mask that allows only keys within
``window // 2`` rows and columns of the query, so keys beyond the border are excluded, not attended as zeros."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.benchmarks.attention_contenders import LocalSelfAttention


def naive_local_attention(module: LocalSelfAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    """The module's projections and pooling around dense masked attention over all h * w positions."""
    n, c, h, w = x.shape
    heads = module.heads
    q, k, v = module.qkv(x).reshape(n, 3, heads, c // heads, h * w).transpose(-1, -2).unbind(1)
    y, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    y, xx = y.flatten(), xx.flatten()
    allowed = ((y[:, None] - y[None]).abs() <= window // 2) & ((xx[:, None] - xx[None]).abs() <= window // 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return module.pool(module.proj(out.transpose(-1, -2).reshape(n, c, h, w)))


def max_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    ("shape", "block"),
    [
        ((2, 8, 9, 11), 7),  # non-square, neither side a multiple of the block: padded query blocks
        ((2, 8, 5, 4), 7),  # the map is smaller than the window: every query sees the border
        ((1, 8, 14, 14), 7),  # whole blocks, as at the lambda-layer shapes
        ((2, 8, 9, 11), 4),  # blocks smaller than the window
    ],
)
def test_local_attention_matches_masked_dense_attention(shape, block, stride):
    torch.manual_seed(0)
    module = LocalSelfAttention(shape[1], stride, heads=4, window=7, block=block).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out = module(x)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    ref = naive_local_attention(module, x, window=7)
    (ref_grad,) = torch.autograd.grad(ref, x, torch.ones_like(ref))
    assert out.shape == ref.shape == (shape[0], shape[1], -(-shape[2] // stride), -(-shape[3] // stride))
    assert max_relative_error(out, ref) < 1e-10
    assert max_relative_error(grad, ref_grad) < 1e-8


def test_border_keys_are_masked_not_zero():
    # Attending to the zero padding as keys (logit 0, value 0) would change every border output.
    torch.manual_seed(0)
    module = LocalSelfAttention(8, 1, heads=4, window=7).double()
    q, k, v = (torch.randn(1, 4, 2, 6, 6, dtype=torch.float64) for _ in range(3))
    out = module.attend(q, k, v)
    # A 6x6 map fits in every 7x7 window whose centre is (2..3, 2..3): those queries see every key.
    full = F.scaled_dot_product_attention(*(t.flatten(3).transpose(-1, -2) for t in (q, k, v)))
    full = full.transpose(-1, -2).reshape(1, 4, 2, 6, 6)
    torch.testing.assert_close(out[..., 2:4, 2:4], full[..., 2:4, 2:4], rtol=1e-12, atol=1e-12)


def test_window_size_matters():
    torch.manual_seed(0)
    local7 = LocalSelfAttention(8, 1, heads=4, window=7).double()
    local9 = LocalSelfAttention(8, 1, heads=4, window=9).double()
    local9.load_state_dict(local7.state_dict())
    x = torch.randn(2, 8, 12, 13, dtype=torch.float64)
    with torch.no_grad():
        out7, out9 = local7(x), local9(x)
        ref9 = naive_local_attention(local9, x, window=9)
    assert max_relative_error(out9, ref9) < 1e-10
    assert max_relative_error(out9, out7) > 1e-3
