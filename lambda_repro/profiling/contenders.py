"""The layers a lambda layer is compared with, at the same place in the network and with the same interface.

``build_contender(kind, channels, stride)`` makes any of them; each maps ``(n, channels, h, w)`` to
``(n, channels, h // stride, w // stride)``:

* ``lambda-fast``: :class:`LambdaLayer` default (``"auto"``); ``lambda-reference``: the published formulation;
* ``conv3x3``: the ResNet-50 3x3 convolution the lambda layer replaces (stride on the convolution, as
  torchvision's ResNet-50 v1.5);
* ``mhsa-global``: 4-head self-attention over all positions (``scaled_dot_product_attention``, whose fused
  kernels do not store the attention matrix), with 1x1 q/k/v and output projections;
* ``mhsa-local7x7``: the same 4-head self-attention, but each query attends only to the keys of its 7x7
  neighbourhood; keys beyond the border are masked out of the softmax.

Shared by the profile stage (the claims table) and the microbenchmarks (tests/benchmarks).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from lambda_repro.models import LambdaLayer

CONTENDERS = ("lambda-fast", "lambda-reference", "conv3x3", "mhsa-global", "mhsa-local7x7")


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


def build_contender(kind: str, channels: int, stride: int) -> nn.Module:
    """One of :data:`CONTENDERS` for a ``channels``-channel map, downsampling by ``stride`` (1 or 2)."""
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
    raise ValueError(f"unknown contender {kind!r}; known: {', '.join(CONTENDERS)}")
