"""The published formulation of the lambda layer's position term, kept as the reference.

This is the math of the published code, written to be read: the position lambdas are
a 3-D convolution of the values with an ``r x r`` relative-position kernel (one input
channel per intra-depth slice, ``key_dim`` output channels), then contracted with the
queries. Every faster formulation in this package is tested against this one, and the
nominal multiply-accumulate count of the published table is the count of this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lambda_output_reference(
    queries: torch.Tensor,
    values: torch.Tensor,
    content: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    height: int,
    width: int,
) -> torch.Tensor:
    """Output ``y = y_c + y_p`` of the lambda layer, as the published code computes it.

    Args:
        queries: ``(N, heads, key_dim, H*W)``.
        values: ``(N, intra_depth, value_dim, H*W)``.
        content: the content lambda ``(N, key_dim, value_dim)``.
        weight: ``(key_dim, intra_depth, 1, r, r)``, the ``lambda_conv`` weight.
        bias: ``(key_dim,)`` or None.

    Returns:
        ``(N, heads, value_dim, H*W)``.
    """
    n, u, v_dim, _ = values.shape
    key_dim = weight.shape[0]
    r = weight.shape[-1]
    pad = (r - 1) // 2
    lambda_p = F.conv3d(values.reshape(n, u, v_dim, height, width), weight, bias, padding=(0, pad, pad))
    lambda_p = lambda_p.reshape(n, key_dim, v_dim, height * width)
    y_content = torch.einsum("bhkm,bkv->bhvm", queries, content)
    return y_content + torch.einsum("bhkm,bkvm->bhvm", queries, lambda_p)
