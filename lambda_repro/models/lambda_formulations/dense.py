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


def relative_position_rows(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Lay an ``r x r`` relative-position kernel out as one dense matrix per query position.

    Args:
        weight: ``(key_dim, intra_depth, r, r)``.

    Returns:
        ``T`` of shape ``(H*W, key_dim, intra_depth*H*W)``, ``T[p, k, (u, P-1-m)] = weight[k, u, my - py + r//2,
        mx - px + r//2]`` inside the window and 0 outside: the zero-padded cross-correlation as a matrix, with
        the key position ``m`` reversed. Reversed, every entry is ``flipped[k, u, py + m'y, px + m'x]`` of the
        flipped kernel on a canvas of all relative offsets: one strided view, copied once, whose backward sums
        the weight gradient (no unfold, no flips of the large matrix).
    """
    key_dim, depth = weight.shape[:2]
    # Crop taps that never reach the map; zero-pad offsets the window does not cover, to (2H-1) x (2W-1).
    kernel = reachable_taps(weight, height, width)
    margin_y, margin_x = height - kernel.shape[-2] // 2 - 1, width - kernel.shape[-1] // 2 - 1
    canvas = F.pad(kernel, (margin_x, margin_x, margin_y, margin_y)).flip(-1, -2).contiguous()
    canvas_width = canvas.shape[-1]
    stride_k, stride_u = canvas.stride()[:2]
    windows = canvas.as_strided(
        (height, width, key_dim, depth, height, width),
        (canvas_width, 1, stride_k, stride_u, canvas_width, 1),
    )
    return windows.reshape(height * width, key_dim, depth * height * width)


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
    table = relative_position_rows(weight.reshape(key_dim, depth, r, r), height, width)
    # An identity block after the table makes A's last key_dim columns the queries themselves, so that the
    # second product, with the shared lambda under the values, adds q . shared too (no separate einsum and sum).
    identity = torch.eye(key_dim, dtype=table.dtype, device=table.device).expand(positions, key_dim, key_dim)
    table = torch.cat([table, identity], -1)  # (P, k, u*P + k)
    # A[p, (n, h), :] = q[n, h, :, p] @ T[p]: one (N*heads x key_dim) @ (key_dim x u*P + k) product per query
    # position, on contiguous operands (bmm on permuted views copies one small matrix at a time).
    q_rows = queries.permute(3, 0, 1, 2).reshape(positions, n * heads, key_dim).contiguous()
    attention = torch.bmm(q_rows, table).reshape(positions, n, heads, -1).permute(1, 2, 0, 3)
    # The table's key positions are reversed: so are the values'.
    keys_values = values.flip(-1).transpose(-1, -2).reshape(n, depth * positions, value_dim)
    keys_values = torch.cat([keys_values, shared_lambda(content, bias)], 1)  # (N, u*P + k, v)
    # y = A @ V: N products of (heads*P x u*P + k) @ (u*P + k x value_dim).
    out = torch.bmm(attention.reshape(n, heads * positions, -1), keys_values)
    return out.reshape(n, heads, positions, value_dim).transpose(-1, -2)
