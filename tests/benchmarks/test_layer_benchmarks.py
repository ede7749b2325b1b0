"""Microbenchmarks at the real shapes of Lambda-ResNet-50's 16 lambda layers (224x224 input).

Run with ``pytest --benchmark-only`` (the default ``pytest`` run skips them). For each
distinct layer shape (grouped by shape; identical layers are benchmarked once, ``count``
says how many share it) and for forward and forward + backward:

* ``lambda-fast``: :class:`LambdaLayer` default (``"auto"``), ``lambda-reference``: the
  published formulation;
* ``conv3x3``: the ResNet-50 3x3 convolution the lambda layer replaces (stride on the
  convolution, as torchvision's ResNet-50 v1.5);
* ``mhsa-global``: 4-head self-attention over all positions (``scaled_dot_product_attention``,
  which does not materialise the attention matrix), with 1x1 q/k/v and output projections;
* ``mhsa-local7x7``: the same 4-head self-attention (same projections, same stride-2 pooling),
  but each query attends only to the keys of its 7x7 neighbourhood; keys beyond the map's
  border are masked out of the softmax (not attended as zero keys). Computed block-wise
  (7x7 query blocks against their 13x13 halo, with a mask that keeps exactly each query's
  own neighbourhood): dense matmuls instead of copying 49 neighbours per position.

Knobs (environment): ``LAMBDA_BENCH_BATCH`` (8), ``LAMBDA_BENCH_ROUNDS`` (3),
``LAMBDA_BENCH_DEVICE`` (``cuda`` if available, else ``cpu``). CUDA timings synchronise
inside the timed function; the CUDA path was never run here (no GPU was available).
``extra_info`` records device, dtype, shape, torch version, threads and peak memory
(CUDA: ``max_memory_allocated``; CPU: the process's max RSS, a high-water mark over the
whole session, so only its growth is attributable to a benchmark).
"""

from __future__ import annotations

import functools
import os
import resource

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lambda_repro.models import LambdaLayer
from lambda_repro.profiling.layer_shapes import LAMBDA_RESNET50_LAYER_SHAPES

BATCH = int(os.environ.get("LAMBDA_BENCH_BATCH", "8"))
ROUNDS = int(os.environ.get("LAMBDA_BENCH_ROUNDS", "3"))
DEVICE = torch.device(os.environ.get("LAMBDA_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))

SHAPES = list(LAMBDA_RESNET50_LAYER_SHAPES)
SHAPE_IDS = [f"c{c}-{s}x{s}-stride{st}" for c, st, s, _ in SHAPES]


class GlobalSelfAttention(nn.Module):
    """Multi-head self-attention over every position of the map (stride 2: 3x3 average pooling after)."""

    def __init__(self, channels: int, stride: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.pool(self.proj(out.transpose(-1, -2).reshape(n, c, h, w)))


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention in which each query attends only to the keys of its ``window`` x ``window``
    neighbourhood; keys beyond the map's border are excluded from the softmax (masked), not attended as zero keys.
    Same 1x1 q/k/v and output projections, same stride-2 handling (3x3 average pooling after) and the same
    ``1/sqrt(head_dim)`` logit scale as :class:`GlobalSelfAttention`.

    Computed block-wise: the map is cut into ``block`` x ``block`` query blocks, each of which takes the logits
    against its ``(block + window - 1)``-square halo of keys with one matmul; a precomputed mask (``-inf`` before
    the softmax) keeps, for each query, exactly the in-map keys of its own neighbourhood. With ``block=7`` every
    lambda-layer map (56, 28, 14, 7) splits into whole blocks; a 7x7 window then computes 169 logits per query
    (120 of them masked) but copies each key and value (13/7)^2 ~ 3.4 times instead of 49 times (an unfold of the
    neighbourhoods), which measured ~4x faster and ~5x smaller than unfold + einsum here (CPU, 128ch 56x56).
    """

    def __init__(self, channels: int, stride: int, heads: int = 4, window: int = 7, block: int = 7) -> None:
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"window must be odd, got {window}")
        self.heads, self.window, self.block = heads, window, block
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h, w).unbind(1)
        return self.pool(self.proj(self.attend(q, k, v).reshape(n, c, h, w)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Local attention of ``(n, heads, head_dim, h, w)`` queries, keys and values; output of the same shape."""
        n, heads, d, h, w = q.shape
        r, b = self.window // 2, self.block
        rows, cols = -(-h // b), -(-w // b)  # query blocks; the map is zero-padded to whole blocks
        hp, wp = rows * b, cols * b
        halo = b + 2 * r
        # (n * heads, blocks, b * b, d): the queries of each block
        q = F.pad(q, (0, wp - w, 0, hp - h)).reshape(n * heads, d, rows, b, cols, b)
        q = q.permute(0, 2, 4, 3, 5, 1).reshape(n * heads, rows * cols, b * b, d)

        def halos(t: torch.Tensor) -> torch.Tensor:  # (n * heads, blocks, halo * halo, d): the keys/values each sees
            t = F.pad(t, (r, r + wp - w, r, r + hp - h)).reshape(n * heads, d, hp + 2 * r, wp + 2 * r)
            t = t.unfold(2, halo, b).unfold(3, halo, b)  # (n * heads, d, rows, cols, halo, halo), a view
            return t.permute(0, 2, 3, 4, 5, 1).reshape(n * heads, rows * cols, halo * halo, d)

        logits = (q * d**-0.5) @ halos(k).transpose(-1, -2)
        logits = logits.masked_fill(_halo_mask(h, w, self.window, b, q.device), float("-inf"))
        out = logits.softmax(-1) @ halos(v)  # (n * heads, blocks, b * b, d)
        out = out.reshape(n, heads, rows, cols, b, b, d).permute(0, 1, 6, 2, 4, 3, 5).reshape(n, heads, d, hp, wp)
        return out[..., :h, :w]


@functools.lru_cache(maxsize=64)
def _halo_mask(h: int, w: int, window: int, block: int, device: torch.device) -> torch.Tensor:
    """``(blocks, block * block, halo * halo)``, True where a (query, halo key) pair is masked out: the key is
    outside the query's window or outside the ``h`` x ``w`` map. Queries of the padding that completes the last
    blocks (their outputs are cropped) keep their whole window, so that no softmax row is entirely ``-inf``.
    """
    r, b = window // 2, block
    rows, cols = -(-h // b), -(-w // b)
    halo = b + 2 * r
    qy = torch.arange(rows * b).view(rows, 1, b, 1, 1, 1)
    qx = torch.arange(cols * b).view(1, cols, 1, b, 1, 1)
    ky = (torch.arange(rows) * b).view(rows, 1, 1, 1, 1, 1) + torch.arange(halo).view(1, 1, 1, 1, halo, 1) - r
    kx = (torch.arange(cols) * b).view(1, cols, 1, 1, 1, 1) + torch.arange(halo).view(1, 1, 1, 1, 1, halo) - r
    in_window = ((qy - ky).abs() <= r) & ((qx - kx).abs() <= r)
    key_in_map = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
    query_in_map = (qy < h) & (qx < w)
    allowed = in_window & (key_in_map | ~query_in_map)
    return (~allowed).reshape(rows * cols, b * b, halo * halo).to(device)


def build(kind: str, channels: int, stride: int) -> nn.Module:
    if kind == "lambda-fast":
        return LambdaLayer(channels, stride)
    if kind == "lambda-reference":
        return LambdaLayer(channels, stride, implementation="reference")
    if kind == "conv3x3":
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
    if kind == "mhsa-global":
        return GlobalSelfAttention(channels, stride)
    if kind == "mhsa-local7x7":
        return LocalSelfAttention(channels, stride, window=7)
    raise ValueError(kind)


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def peak_memory_mib() -> float:
    if DEVICE.type == "cuda":
        return torch.cuda.max_memory_allocated(DEVICE) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", ["lambda-fast", "lambda-reference", "conv3x3", "mhsa-global", "mhsa-local7x7"])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize(("channels", "stride", "side", "count"), SHAPES, ids=SHAPE_IDS)
def test_layer(benchmark, kind, mode, channels, stride, side, count):
    benchmark.group = f"{channels}ch {side}x{side} stride {stride} (x{count} in lambda_resnet50)"
    torch.manual_seed(0)
    module = build(kind, channels, stride).to(DEVICE).train()
    x = torch.randn(BATCH, channels, side, side, device=DEVICE, requires_grad=mode != "forward")

    def forward() -> torch.Tensor:
        with torch.no_grad():
            out = module(x)
        synchronize()
        return out

    def forward_backward() -> torch.Tensor:
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out.sum().backward()
        synchronize()
        return out

    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)
    rss_before = peak_memory_mib()
    out = benchmark.pedantic(
        forward if mode == "forward" else forward_backward, rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info.update(
        {
            "device": str(DEVICE),
            "dtype": str(x.dtype),
            "input_shape": list(x.shape),
            "output_shape": list(out.shape),
            "layers_sharing_shape": count,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "peak_memory_mib": round(peak_memory_mib(), 1),
            "peak_memory_growth_mib": round(peak_memory_mib() - rss_before, 1),
            "peak_memory_kind": "cuda max_memory_allocated" if DEVICE.type == "cuda" else "process max RSS",
        }
    )
    # The same output shape for every contender: they are interchangeable in the block.
    assert out.shape == (BATCH, channels, side // stride, side // stride)
