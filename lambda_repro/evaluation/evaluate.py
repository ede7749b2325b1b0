"""Top-1 / top-5 of a model on a dataset; with a process group every rank scores its own shard."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lambda_repro.distributed import DistributedContext, all_reduce_sum
from lambda_repro.evaluation.accuracy import TopKCounts


def shard_indices(length: int, rank: int, world_size: int) -> list[int]:
    """Every ``world_size``-th index from ``rank``: shards cover the dataset exactly once, without the
    padding DistributedSampler adds (which would count some images twice)."""
    return list(range(rank, length, world_size))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    context: DistributedContext | None = None,
    workers: int = 0,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    description: str = "eval",
) -> dict[str, float]:
    """Return ``{"top1", "top5", "loss", "images"}`` (percent, mean cross-entropy, count) over ``dataset``.

    ``context`` shards the dataset over its ranks and sums the counts, so every rank returns
    the same numbers. ``channels_last`` and ``autocast_dtype`` are the GPU settings (not run
    here: no GPU on the development machine).
    """
    if context is not None and context.distributed:
        dataset = Subset(dataset, shard_indices(len(dataset), context.rank, context.world_size))
    cuda = device.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=cuda)
    was_training = model.training
    model.eval()
    counts = TopKCounts()
    show = progress and (context is None or context.is_main)
    for images, targets in tqdm(loader, desc=description, disable=not show, leave=False):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        loss_sum = nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
        counts.update(logits, targets, loss_sum)
    model.train(was_training)
    if context is not None:
        counts = TopKCounts.from_tensor(all_reduce_sum(counts.as_tensor(), context))
    return {**counts.percentages(), "images": counts.images}
