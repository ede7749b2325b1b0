"""The torchrun command line that starts the training workers on one node.

One node (``nnodes == 1``): ``--standalone``, torchrun picks a free port itself, so several
runs on one machine never collide. Several nodes: the c10d rendezvous at
``master_addr:master_port``; every node runs the same command (its ``node_rank`` only
orders the log output: c10d assigns ranks as nodes arrive). torchrun restarts the whole
group up to ``max_restarts`` times after a worker dies.
"""

from __future__ import annotations

import os
import sys


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
) -> list[str]:
    """argv for ``python -m torch.distributed.run ... -m lambda_repro.training.worker --config <file>``.

    ``config_path`` holds a :class:`TrainConfig` as JSON (``config.to_json()``).
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
    command += [f"--max-restarts={max_restarts}", "-m", "lambda_repro.training.worker", "--config", str(config_path)]
    return command
