"""Lambda convolution with a direct forward and an FFT backward, for large maps.

The published position term convolves every value map (one input channel) with
``key_dim`` ``r x r`` kernels. The forward of that convolution runs well in oneDNN /
cuDNN, but its backward does not: with one input channel the weight gradient and the
input gradient run ~10-20x slower than the forward on CPU. Both gradients are
correlations of whole maps, so here they are computed in the Fourier domain: one batched
real FFT of the output gradient, two element-wise spectrum products, and small inverse
FFTs. Circular convolution of length ``L >= H + r//2`` equals the zero-padded one on
every position that is kept, so the result is exact up to floating-point rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lambda_repro.models.lambda_kernel import position_bias, reachable_taps


def fft_length(minimum: int) -> int:
    """Smallest 2-3-5-smooth integer >= ``minimum`` (FFT libraries are fastest there)."""
    n = minimum
    while True:
        rest = n
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return n
        n += 1


def _centred(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Zero-pad an odd ``(.., ry, rx)`` kernel to ``shape`` with its centre tap at index (0, 0)."""
    ry, rx = kernel.shape[-2:]
    padded = F.pad(kernel, (0, shape[1] - rx, 0, shape[0] - ry))
    return torch.roll(padded, (-(ry // 2), -(rx // 2)), (-2, -1))


class LambdaConvolution(torch.autograd.Function):
    """``out = conv2d(maps, weight, padding=r//2)`` (cross-correlation), gradients by FFT.

    ``maps``: ``(B, u, H, W)``; ``weight``: ``(k, u, ry, rx)`` with odd sides no larger
    than ``2H-1`` x ``2W-1``; returns ``(B, k, H, W)``.
    """

    @staticmethod
    def forward(ctx, maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(maps, weight)
        ry, rx = weight.shape[-2:]
        return F.conv2d(maps, weight, padding=(ry // 2, rx // 2))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        maps, weight = ctx.saved_tensors
        height, width = maps.shape[-2:]
        ry, rx = weight.shape[-2:]
        # Circular length that keeps every kept position free of wrap-around.
        size = (fft_length(height + ry // 2), fft_length(width + rx // 2))
        grad_spectrum = torch.fft.rfft2(grad_out, s=size)  # (B, k, Ly, Lx/2+1)
        grad_maps = grad_weight = None
        if ctx.needs_input_grad[0]:
            # grad_maps[q] = sum_k sum_p weight_k[q - p] grad_out_k[p]: a convolution.
            kernel_spectrum = torch.fft.rfft2(_centred(weight, size))  # (k, u, ...)
            # Accumulated one kernel at a time: no (B, k, u, ...) temporary (peak memory).
            spectrum = grad_spectrum[:, 0].unsqueeze(1) * kernel_spectrum[0]
            for k in range(1, kernel_spectrum.shape[0]):
                spectrum += grad_spectrum[:, k].unsqueeze(1) * kernel_spectrum[k]
            grad_maps = torch.fft.irfft2(spectrum, s=size)[..., :height, :width]
        if ctx.needs_input_grad[1]:
            # grad_weight[d] = sum_b sum_p grad_out[p] maps[p + d]: a cross-correlation.
            maps_spectrum = torch.fft.rfft2(maps, s=size)  # (B, u, ...)
            spectrum = torch.stack(
                [(grad_spectrum[:, k].conj().unsqueeze(1) * maps_spectrum).sum(0) for k in range(weight.shape[0])]
            )
            full = torch.roll(torch.fft.irfft2(spectrum, s=size), (ry // 2, rx // 2), (-2, -1))
            grad_weight = full[..., :ry, :rx]
        return grad_maps, grad_weight


def position_output_fft(
    queries: torch.Tensor,
    values: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Position term ``y_p``, same signature and result as ``position_output_reference``."""
    n, depth, value_dim, positions = values.shape
    key_dim, r = weight.shape[0], weight.shape[-1]
    kernel = reachable_taps(weight.reshape(key_dim, depth, r, r), height, width)
    maps = values.reshape(n, depth, value_dim, height, width).transpose(1, 2)
    maps = maps.reshape(n * value_dim, depth, height, width)
    lambdas = LambdaConvolution.apply(maps, kernel).reshape(n, value_dim, key_dim, positions)
    # y[n,h,v,m] = sum_k q[n,h,k,m] lambda[n,k,v,m]: one (heads x key_dim) @ (key_dim x value_dim)
    # product per position. Made contiguous first: einsum's bmm on these strides copies every
    # small matrix separately (tens of thousands of tiny ops, very slow with several threads).
    heads = queries.shape[1]
    q_rows = queries.permute(0, 3, 1, 2).reshape(n * positions, heads, key_dim)
    lambda_rows = lambdas.permute(0, 3, 2, 1).reshape(n * positions, key_dim, value_dim)
    out = torch.bmm(q_rows, lambda_rows).reshape(n, positions, heads, value_dim).permute(0, 2, 3, 1)
    if bias is not None:
        out = out + position_bias(queries, bias)
    return out
