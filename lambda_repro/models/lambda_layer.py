"""The lambda layer of LambdaNetworks (Bello, ICLR 2021), as in the published checkpoint.

A lambda layer summarises its context into small linear functions ("lambdas") and
applies them to every query:

* content lambda: ``softmax_m(K)`` contracted with ``V`` over all positions -> ``(k, v)``;
* position lambdas: a learned ``r x r`` relative-position embedding applied to ``V``
  around every query position -> ``(k, v)`` per position;
* output ``y = q . (lambda_c + lambda_p)`` for each of ``heads`` query heads, whose
  outputs are concatenated to ``heads * value_dim = channels``.

Submodule names and shapes are exactly the published ones (``conv_qkv``, ``norm_q``,
``norm_v``, ``lambda_conv``), so its checkpoint loads without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from lambda_repro.models.gradient_layout import canonical_gradient, is_channels_last
from lambda_repro.models.lambda_conv import LambdaConv
from lambda_repro.models.lambda_formulations.chooser import (
    IMPLEMENTATIONS,
    FormulationChooser,
    in_graph_capture,
    resolve_formulation,
    run_formulation,
)

__all__ = ["IMPLEMENTATIONS", "LambdaLayer"]


class LambdaLayer(nn.Module):
    """Lambda layer with the published defaults.

    Args:
        channels: input and output channels ``d``; must be divisible by ``heads``.
        stride: 1, or 2 for a 3x3 / stride-2 average pooling after the layer (as
            published).
        key_dim: query/key depth ``k`` (16).
        heads: number of query heads (4); ``value_dim = channels // heads``.
        intra_depth: ``u`` (1).
        context_size: ``r``, side of the local relative-position context (23, odd).
        implementation: how the position term is computed; every choice computes the
            same function (see ``lambda_formulations``). ``"auto"`` (default) runs the
            formulation a fixed rule picks for the map size (``"dense"`` on small maps,
            ``"spectral"`` on large ones), or, once ``chooser`` is set (see
            ``lambda_repro.models.benchmark_formulations``), the fastest one measured on
            this machine for the input's shape, dtype, device and mode. ``"reference"``
            is the published formulation. ``last_formulation`` says what the last call
            ran; ``lambda_repro.models.pin_formulations`` fixes it.
    """

    def __init__(
        self,
        channels: int,
        stride: int = 1,
        *,
        key_dim: int = 16,
        heads: int = 4,
        intra_depth: int = 1,
        context_size: int = 23,
        implementation: str = "auto",
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if context_size % 2 != 1:
            raise ValueError(f"context_size must be odd, got {context_size}")
        self.channels = channels
        self.stride = stride
        self.key_dim = key_dim
        self.heads = heads
        self.intra_depth = intra_depth
        self.value_dim = channels // heads
        self.context_size = context_size
        self.implementation = implementation

        q_channels = heads * key_dim
        k_channels = key_dim * intra_depth
        v_channels = self.value_dim * intra_depth
        self.conv_qkv = nn.Conv2d(channels, q_channels + k_channels + v_channels, 1, bias=False)
        self.norm_q = nn.BatchNorm2d(q_channels)
        self.norm_v = nn.BatchNorm2d(v_channels)
        r = context_size
        self.lambda_conv = LambdaConv(intra_depth, key_dim, (1, r, r), padding=(0, (r - 1) // 2, (r - 1) // 2))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.chooser: FormulationChooser | None = None  # None: "auto" follows the fixed rule
        self.last_formulation: str | None = None

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, name: str) -> None:
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"unknown lambda implementation {name!r}; choose from {IMPLEMENTATIONS}")
        self._implementation = name

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, stride={self.stride}, key_dim={self.key_dim}, heads={self.heads}, "
            f"intra_depth={self.intra_depth}, context_size={self.context_size}, "
            f"implementation={self.implementation!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        split = [self.heads * self.key_dim, self.key_dim * self.intra_depth, self.value_dim * self.intra_depth]
        q, k, v = torch.split(self.conv_qkv(x), split, dim=1)
        q, v = self.norm_q(q), self.norm_v(v)
        if not in_graph_capture():
            # BatchNorm's CPU backward is wrong on some gradient strides at batch 1 (gradient_layout).
            q, v = canonical_gradient(q), canonical_gradient(v)
        q = q.reshape(n, self.heads, self.key_dim, h * w)
        v = v.reshape(n, self.intra_depth, self.value_dim, h * w)
        k = torch.softmax(k.reshape(n, self.intra_depth, self.key_dim, h * w), dim=-1)

        content_lambda = torch.einsum("bukm,buvm->bkv", k, v)
        weight, bias = self.lambda_conv.weight, self.lambda_conv.bias
        inputs = (q, v, content_lambda, weight, bias, h, w)
        formulation = resolve_formulation(self.implementation, self.chooser, *inputs)
        if not in_graph_capture():
            self.last_formulation = formulation
        out = run_formulation(formulation, *inputs)
        channels_last = is_channels_last(x)
        position_major = out.permute(3, 0, 1, 2).is_contiguous() and not out.is_contiguous()
        if position_major and (channels_last or not out.requires_grad):
            # The spectral output lies position-major, (H, W, N, C) in memory. Laid out as NCHW, it would be a
            # transpose reading at a stride of N*C floats, often a multiple of 4 KiB, where every read misses
            # the cache (29% of the 128-channel 56x56 layer's inference); to (N, H, W, C), channels_last, it is
            # a copy of C-float runs, and BatchNorm, ReLU, pooling and the next 1x1 convolution take it as it is.
            # In training only for a channels_last network: in an NCHW one, BatchNorm's backward on the mixed
            # layouts that follow cost more than the transpose saves (lambda_resnet50 training 0.71x resnet50 this
            # way, 0.73x with NCHW; interleaved).
            return self.pool(out.permute(0, 3, 1, 2).contiguous().view(n, h, w, c).permute(0, 3, 1, 2))
        out = out.reshape(n, c, h, w)
        if channels_last:
            # Hand a channels_last network its layout back (the next convolution expects it).
            out = out.contiguous(memory_format=torch.channels_last)
        return self.pool(out)
