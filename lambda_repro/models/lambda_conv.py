"""The lambda layer's relative-position embedding, stored as the published ``Conv3d``.

The published checkpoint holds it as a ``(key_dim, intra_depth, 1, r, r)`` conv3d weight,
so that is the parameter's shape here too. ``Module.to(memory_format=torch.channels_last)``
converts every 4-D *and* 5-D tensor to that 4-D format and raises on a 5-D one; this
module lays its kernel out through the 4-D ``(key_dim, intra_depth, r, r)`` view instead,
so a whole Lambda-ResNet converts (as ResNets are converted for GPU tensor cores).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_FOUR_D_FORMATS_MESSAGE = "required rank 4 tensor to use channels_last format"


def _through_4d_view(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn``, applied to a ``(.., 1, r, r)`` tensor's 4-D view when ``fn`` asks for a 4-D memory format."""

    def apply(tensor: torch.Tensor) -> torch.Tensor:
        try:
            return fn(tensor)
        except RuntimeError as error:
            if _FOUR_D_FORMATS_MESSAGE not in str(error) or tensor.dim() != 5 or tensor.shape[2] != 1:
                raise
            converted = fn(tensor.squeeze(2)).unsqueeze(2)
            if converted.is_contiguous():
                # With intra_depth 1 the 4-D format changes only the strides of size-1 dims, not the memory.
                # Keep the plain strides: the gradients come with them, and DDP, which lays its buckets out like
                # the parameters, warns on every step that "grad strides do not match bucket view strides".
                return converted.clone(memory_format=torch.contiguous_format)
            return converted

    return apply


class LambdaConv(nn.Conv3d):
    """``nn.Conv3d(intra_depth, key_dim, (1, r, r))``, as published, that also converts to channels_last."""

    def _apply(self, fn, recurse=True):
        return super()._apply(_through_4d_view(fn), recurse)
