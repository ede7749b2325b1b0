"""channels_last for models that also hold 5-D weights.

``nn.Module.to(memory_format=torch.channels_last)`` raises "required rank 4 tensor to use
channels_last format" on any model with a 5-D tensor, and every lambda layer has one (the
position convolution's conv3d weight): the 4-D tensors are converted here, the rest kept.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert every 4-D parameter and buffer of ``model`` to channels_last, in place; returns ``model``."""
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model
