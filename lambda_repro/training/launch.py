"""The torchrun command line that starts the training workers on one node.

One node (``nnodes == 1``): ``--standalone``, torchrun picks a free port itself, so several
runs on one machine never collide. Several nodes: the c10d rendezvous at
``master_addr:master_port``; every node runs the same command (its ``node_rank`` only
orders the log output: c10d assigns ranks as nodes arrive). torchrun restarts the whole
group up to ``max_restarts`` times after a worker dies. The evaluate stage starts its
workers (:mod:`lambda_repro.evaluation.worker`) with the same command line.
"""

from __future__ import annotations

import os
import sys

import torch

TRAIN_WORKER = "lambda_repro.training.worker"


def device_count_problem(nproc_per_node: int) -> str | None:
    """Why ``nproc_per_node`` processes cannot each have a GPU of this node, or None.

    With CUDA each process takes the GPU of its local rank, so more processes than visible
    GPUs would fail in every surplus worker (or share a GPU); on a CPU-only node there is
    no such limit (each process gets ``OMP_NUM_THREADS`` of the cores).
    """
    if not torch.cuda.is_available():
        return None
    visible = torch.cuda.device_count()
    if nproc_per_node <= visible:
        return None
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
    return (
        f"distributed.nproc_per_node: {nproc_per_node} processes but only {visible} CUDA device(s) are "
        f"visible{where}; one process per GPU"
    )


def torchrun_command(
    config_path: str | os.PathLike,
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    max_restarts: int = 0,
    rdzv_id: str | None = None,
    module: str = TRAIN_WORKER,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """argv for ``python -m torch.distributed.run ... -m <module> --config <file> <extra_args>``.

    ``config_path`` holds the job as JSON: for the training worker a :class:`TrainConfig`
    (``config.to_json()``).
    """
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        rdzv_id = rdzv_id or os.environ.get("SLURM_JOB_ID") or f"lambda-repro-{master_port}"
        command += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={master_addr}:{master_port}",
            f"--rdzv-id={rdzv_id}",
        ]
    command += [f"--max-restarts={max_restarts}", "-m", module, "--config", str(config_path), *extra_args]
    return command
