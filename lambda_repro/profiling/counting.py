"""Parameter and multiply-accumulate counts, in the convention of the published table.

The published table's "6.576G FLOPs" are really multiply-accumulates (MACs): one
multiply plus one add counts once. FLOPs in the strict sense are ``2 x MACs``. Counted:
convolutions (including the 3-D lambda convolution), the einsum / matmul contractions and
the classifier; not counted: normalisation, activations, softmax, pooling, biases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lambda_repro.models.lambda_layer import LambdaLayer


def count_params(model: nn.Module) -> int:
    """Number of parameters (``sum(p.numel())``); buffers such as BN statistics excluded."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def reference_formulation(model: nn.Module) -> Iterator[None]:
    """Temporarily compute every lambda layer with the published formulation."""
    layers = [m for m in model.modules() if isinstance(m, LambdaLayer)]
    saved = [m.implementation for m in layers]
    try:
        for m in layers:
            m.implementation = "reference"
        yield
    finally:
        for m, name in zip(layers, saved, strict=True):
            m.implementation = name


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Nominal multiply-accumulates of one forward pass on a zero input of ``input_size``.

    Counted in eval mode on the published (reference) formulation of the lambda layers,
    whatever formulation the model runs by default: that is the figure of the published
    table (6,575,505,408 for Lambda-ResNet-50 at 224). ``FLOPs = 2 * MACs``.
    """
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    model.eval()
    try:
        with torch.no_grad(), reference_formulation(model):
            counter = FlopCounterMode(display=False)
            with counter:
                model(torch.zeros(input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
