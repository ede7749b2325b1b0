"""Top-1 / top-5 of a model on a dataset; with a process group every rank scores its own shard."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lambda_repro.distributed import DistributedContext, all_reduce_sum
from lambda_repro.evaluation.accuracy import TopKCounts
from lambda_repro.evaluation.health import MAX_ABS_ACTIVATION, ActivationMonitor, HealthCounts


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
    pin_memory: bool | None = None,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    description: str = "eval",
    health: bool = False,
    max_abs_activation: float = MAX_ABS_ACTIVATION,
) -> dict:
    """Return ``{"top1", "top5", "loss", "images"}`` (percent, mean cross-entropy, count) over ``dataset``.

    ``health`` also watches every stage's output (forward hooks) and adds ``"health"``: the
    summary of :class:`~lambda_repro.evaluation.health.HealthCounts` (non-finite logits and
    losses, per-stage max |activation| against ``max_abs_activation``).

    ``context`` shards the dataset over its ranks and sums the counts, so every rank returns
    the same numbers: every image once, none twice, whatever the world size (no padding).
    ``workers``, ``pin_memory`` (None: on CUDA), ``channels_last`` and ``autocast_dtype`` are
    the GPU settings; each is tested forced on on CPU, and none has run on a GPU here.
    """
    if context is not None and context.distributed:
        dataset = Subset(dataset, shard_indices(len(dataset), context.rank, context.world_size))
    pin_memory = device.type == "cuda" if pin_memory is None else pin_memory
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)
    was_training = model.training
    model.eval()
    counts = TopKCounts()
    watched = HealthCounts()
    show = progress and (context is None or context.is_main)
    for images, targets in tqdm(loader, desc=description, disable=not show, leave=False):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        monitor = ActivationMonitor(model) if health else contextlib.nullcontext()
        with monitor, torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        loss_sum = nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
        counts.update(logits, targets, loss_sum)
        if health:
            losses = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            watched.update(logits, losses, monitor)
    model.train(was_training)
    if context is not None:
        counts = TopKCounts.from_tensor(all_reduce_sum(counts.as_tensor(), context))
    result = {**counts.percentages(), "images": counts.images}
    if health:
        if context is not None and context.distributed:
            sums, maxima = watched.as_tensors()
            sums = all_reduce_sum(sums, context)
            maxima = maxima.to(context.device)
            dist.all_reduce(maxima, op=dist.ReduceOp.MAX)  # maxima do not add up
            watched.load_tensors(sums.cpu(), maxima.cpu())
        result["health"] = watched.summary(max_abs_activation)
    return result
