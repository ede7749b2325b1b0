"""Hand BatchNorm a gradient in the canonical layout of its input.

torch 2.14's CPU BatchNorm backward computes a wrong input gradient when the incoming
gradient is "channels_last contiguous" only by the size-1 rule: at batch 1 a gradient of
shape ``(1, C, H, W)`` with strides ``(C, 1, W*C, C)`` (what the bmm backward of the
``dense`` formulation produces for the values) passes ``is_contiguous(channels_last)``,
but the kernel reads it with the batch stride it expects (``H*W*C``) and mixes channels
(relative error ~1.4 on the layer's input gradient, measured). A copy into the input's
canonical layout avoids it; a gradient already in that layout is passed on untouched.
"""

from __future__ import annotations

import torch


def is_channels_last(tensor: torch.Tensor) -> bool:
    """Laid out channels_last, and not merely also contiguous (as a tensor with ``C == 1`` or ``H == W == 1`` is)."""
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def _canonical_strides(shape: torch.Size, channels_last: bool) -> tuple[int, ...]:
    n, c, h, w = shape
    return (h * w * c, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)


class _CanonicalGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = is_channels_last(tensor)
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        if grad.stride() == _canonical_strides(grad.shape, ctx.channels_last):
            return grad
        layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return torch.empty(grad.shape, dtype=grad.dtype, device=grad.device, memory_format=layout).copy_(grad)


def canonical_gradient(tensor: torch.Tensor) -> torch.Tensor:
    """Identity on a 4-D tensor whose backward gives the gradient the tensor's own canonical strides."""
    return _CanonicalGradient.apply(tensor)
