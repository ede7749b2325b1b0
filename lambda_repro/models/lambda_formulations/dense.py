"""Dense relative-position formulation of the lambda layer's position term, for small maps.

On a small map (Lambda-ResNet-50's 14x14 and 7x7 stages) the ``r x r`` window covers
(nearly) the whole map, so the published 3-D convolution mostly multiplies zero padding.
Here the relative-position embedding is laid out as a dense ``(H*W) x (H*W)`` matrix per
key channel; contracting it with the queries first gives one position "attention"
``A = q . E`` per head (``heads`` = 4 rows instead of ``key_dim`` = 16 lambda channels),
and ``y = A @ V`` is a batched matrix product. Both steps are GEMMs, forward and
backward; no step touches padding. Exact: the same sums as the reference, reordered.
Memory and work grow as ``(H*W)^2``, so it is for small maps only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lambda_repro.models.lambda_formulations.kernel import reachable_taps, shared_lambda


def relative_position_matrix(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Lay an ``r x r`` relative-position kernel out as dense matrices over positions.

    Args:
        weight: ``(key_dim, intra_depth, r, r)``.

    Returns:
        ``T`` of shape ``(key_dim, intra_depth, H*W, H*W)`` with
        ``T[k, u, p, q] = weight[k, u, qy - py + r//2, qx - px + r//2]`` inside the window
        and 0 outside: the matrix form of the zero-padded cross-correlation.
    """
    key_dim, depth = weight.shape[:2]
    # Centre the kernel on a (2H-1) x (2W-1) canvas of all relative offsets (crop taps
    # that never reach the map, zero-pad offsets the window does not cover).
    kernel = reachable_taps(weight, height, width)
    margin_y, margin_x = height - kernel.shape[-2] // 2 - 1, width - kernel.shape[-1] // 2 - 1
    canvas = F.pad(kernel, (margin_x, margin_x, margin_y, margin_y))
    # unfold of the flipped canvas gives U[k, q', p] = canvas[H-1 - qy + py, W-1 - qx + px]
    # with q' the flipped key position; un-flipping q' yields T. unfold's backward (fold)
    # accumulates the weight gradient without scatter.
    flipped = canvas.flip(-1, -2).reshape(key_dim * depth, 1, 2 * height - 1, 2 * width - 1)
    unfolded = F.unfold(flipped, (height, width))
    positions = height * width
    return unfolded.flip(1).transpose(1, 2).reshape(key_dim, depth, positions, positions)


def lambda_output_dense(
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Layer output, same signature and result as ``lambda_output_reference``."""
    n, depth, value_dim, positions = values.shape
    heads = queries.shape[1]
    key_dim, r = weight.shape[0], weight.shape[-1]
    table = relative_position_matrix(weight.reshape(key_dim, depth, r, r), height, width)
    # A[n,h,p,:] = sum_k q[n,h,k,p] T[k,p,:]: one (N*heads x key_dim) @ (key_dim x u*P) product per
    # query position p, on contiguous operands (einsum's bmm on these strides copies every
    # small matrix separately: very slow with several threads).
    # Both made contiguous: bmm on these permuted views copies one small matrix at a time.
    q_rows = queries.permute(3, 0, 1, 2).reshape(positions, n * heads, key_dim).contiguous()
    table_rows = table.permute(2, 0, 1, 3).reshape(positions, key_dim, depth * positions).contiguous()
    attention = torch.bmm(q_rows, table_rows)  # (P, N*heads, u*P)
    attention = attention.reshape(positions, n, heads, depth * positions).permute(1, 2, 0, 3)
    keys_values = values.transpose(-1, -2).reshape(n, depth * positions, value_dim)
    # y = A @ V: N products of (heads*P x u*P) @ (u*P x value_dim).
    out = torch.bmm(attention.reshape(n, heads * positions, depth * positions), keys_values)
    out = out.reshape(n, heads, positions, value_dim).transpose(-1, -2)
    return out + torch.einsum("bhkm,bkv->bhvm", queries, shared_lambda(content, bias))
