"""The process group a training worker runs in: ranks, device and backend, set up from torchrun's environment.

torchrun starts one process per device and tells each its place through environment
variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...). A process
started without torchrun is a world of one, so the same code runs under ``python`` too.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None: a single process without a process group

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs to MLflow and draws the progress bar."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0: one process per node (it writes the node's own files)."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def resolve_backend(backend: str, cuda: bool) -> str:
    """``auto`` is NCCL with CUDA and gloo on CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"distributed.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    return backend


def init_distributed(backend: str = "auto", timeout_s: float = 1800) -> DistributedContext:
    """Join the process group torchrun prepared (or run alone when there is none).

    With CUDA each process takes the GPU of its local rank. The NCCL path has not been run
    here (no GPU on the development machine); the gloo path is tested on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size == 1:
        return DistributedContext(0, 0, 1, device, None)
    resolved = resolve_backend(backend, cuda)
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend=resolved, store=_attempt_store(world_size, timeout), rank=rank, world_size=world_size, timeout=timeout
    )
    return DistributedContext(rank, local_rank, world_size, device, resolved)


def _attempt_store(world_size: int, timeout: timedelta) -> dist.Store:
    """torchrun's store, seen through a prefix unique to this restart attempt.

    After torchrun restarts a group (a worker was killed), the store still holds the dead
    attempt's addresses under the same keys; with plain ``env://`` the new workers read
    them and gloo hangs connecting to a dead peer (seen with torch 2.14). A prefix per
    ``TORCHELASTIC_RESTART_COUNT`` gives every attempt a clean namespace.
    """
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"lambda_repro/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum a tensor over all ranks (a no-op for a single process); returns the summed tensor."""
    if context.distributed:
        values = values.to(context.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` on every rank."""
    if not context.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_object(value, context: DistributedContext) -> list:
    """Every rank's ``value``, in rank order (``[value]`` for a single process)."""
    if not context.distributed:
        return [value]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def node_name() -> str:
    """This process's node, for messages: torchrun's node rank (``GROUP_RANK``) and the host name."""
    return f"node {os.environ.get('GROUP_RANK', '0')} ({socket.gethostname()})"


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if context.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
