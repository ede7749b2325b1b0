"""Recompute BatchNorm running statistics from data ("precise BN"), without gradients or weight changes.

Training leaves each BatchNorm with an exponential average (momentum 0.1) of the statistics of
the last few dozen small per-process batches, taken on augmented crops while the weights still
moved. For a plain ResNet that estimate is close enough; a Lambda-ResNet's lambda layer is of
degree 2 in its input in eval mode (its output is a product of two normalised projections), so
a few per cent of error in a scale is squared at each of its 16 blocks: after a short run
activations reach 1e34 and logits NaN (``scripts/diagnose_activations.py``). Averaging the
statistics over many images seen the way evaluation sees them removes it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    dataset: Dataset,
    *,
    images: int,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> int:
    """Set every BatchNorm's running mean / variance to their average over ``images`` images of ``dataset``.

    The images are a seeded random choice (splits are stored by class, and a batch of one class
    has no representative statistics); each batch counts equally (cumulative average,
    ``momentum=None``). Weights are untouched; the model is left in eval mode. Returns the
    number of images used.
    """
    norms = batchnorms(model)
    if not norms or images <= 0:
        return 0
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:images].tolist()
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None
    model.train()
    try:
        for batch, _ in DataLoader(Subset(dataset, order), batch_size=batch_size, shuffle=False):
            model(batch.to(device))
    finally:
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
        model.eval()
    return len(order)
