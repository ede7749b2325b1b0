"""DVC stage `train`: launch the distributed training workers with torchrun and wait for them.

Reads the `seed`, `model`, `train`, `distributed` and `tracking` sections of params.yaml
(and `data.manifest`). Every node of a multi-node job runs this same command; each node's
rank and the rendezvous address come from params, or from the environment where a
scheduler sets them (`NODE_RANK` or SLURM's `SLURM_NODEID`; `MASTER_ADDR`, `MASTER_PORT`).

Exit codes: 0 trained; 75 stopped by SIGTERM / SIGINT with a checkpoint saved (run again to
resume); 1 bad params, a NaN / inf loss, or a crash torchrun could not recover from.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:
    # Run as `python pipelines/train.py`: import from the project root instead of pipelines/, where a
    # stage named like a standard-library module (profile.py) would shadow it for torch.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from lambda_repro.tracking.git_info import git_tags
from lambda_repro.training import TrainConfig, torchrun_command
from lambda_repro.training.outcome import EXIT_CODES, FINISHED, OUTCOME_ENV, read_outcome
from pipelines._params import ParamError, fail, load_checked, model_kwargs


def build_config(params: dict, world_size: int) -> TrainConfig:
    train, tracking = params["train"], params["tracking"]
    return TrainConfig(
        model=params["model"]["name"],
        model_kwargs=model_kwargs(params["model"]),
        manifest=params["data"]["manifest"],
        epochs=train["epochs"],
        image_size=train["image_size"],
        global_batch=train["global_batch"],
        world_size=world_size,
        base_lr=train["base_lr"],
        momentum=train["momentum"],
        weight_decay=train["weight_decay"],
        label_smoothing=train["label_smoothing"],
        warmup_epochs=train["warmup_epochs"],
        zero_init_residual=train["zero_init_residual"],
        precision=train["precision"],
        channels_last=train["channels_last"],
        seed=params["seed"],
        workers=train["workers"],
        backend=params["distributed"]["backend"],
        checkpoint=train["checkpoint"],
        metrics_dir="metrics",
        tracking={
            "uri": tracking["uri"],
            "experiment": tracking["experiment"],
            "system_metrics": tracking["system_metrics"],
            "system_metrics_interval_s": tracking["system_metrics_interval_s"],
            "tags": {**git_tags(), "pipeline.stage": "train"},
        },
        params_to_log=params,
    )


def node_settings(distributed: dict) -> dict:
    """Node rank and rendezvous address: params, overridden by a scheduler's environment."""
    node_rank = os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", distributed["node_rank"]))
    return {
        "nproc_per_node": distributed["nproc_per_node"],
        "nnodes": distributed["nnodes"],
        "node_rank": int(node_rank),
        "master_addr": os.environ.get("MASTER_ADDR", distributed["master_addr"]),
        "master_port": int(os.environ.get("MASTER_PORT", distributed["master_port"])),
        "max_restarts": distributed["max_restarts"],
    }


def run_torchrun(config: TrainConfig, node: dict) -> tuple[int, dict | None]:
    """Run torchrun in its own session (forwarding SIGTERM / SIGINT to it once); returns its exit code and outcome."""
    with tempfile.TemporaryDirectory(prefix="lambda-repro-train-") as tmp:
        config_path, outcome_path = Path(tmp) / "config.json", Path(tmp) / "outcome.json"
        config_path.write_text(config.to_json(), encoding="utf-8")
        command = torchrun_command(config_path, **node)
        env = {**os.environ, OUTCOME_ENV: str(outcome_path)}
        # CPU threads per worker: the node's cores shared out (torchrun would set 1 only when nproc > 1).
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // node["nproc_per_node"])))
        process = subprocess.Popen(command, env=env, start_new_session=True)

        def forward(signum, frame):
            process.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            returncode = process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return returncode, read_outcome(outcome_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        params = load_checked(args.params, "train")
        node = node_settings(params["distributed"])
        if node["node_rank"] >= node["nnodes"]:
            raise ParamError(
                f"distributed.node_rank: must be < distributed.nnodes ({node['nnodes']}), got {node['node_rank']}"
            )
        config = build_config(params, world_size=node["nproc_per_node"] * node["nnodes"])
        if not Path(config.manifest).is_file():
            raise ParamError(f"data.manifest: file not found: {config.manifest} (run the prepare stage first)")
    except ParamError as err:
        return fail("train", str(err))

    print(
        f"train: {config.model}, {config.epochs} epochs at {config.image_size}px, global batch {config.global_batch} "
        f"over {config.world_size} processes ({node['nnodes']} node(s)), lr {config.peak_lr:g}"
    )
    returncode, result = run_torchrun(config, node)
    # The workers' own report first: torchrun exits non-zero when it was itself sent SIGTERM.
    if result is not None and result["status"] != FINISHED:
        return fail("train", result["message"], EXIT_CODES[result["status"]])
    if returncode != 0:
        return fail("train", f"torchrun exited with code {returncode} (see the worker errors above)", returncode)
    if result is None:
        return fail("train", "the workers exited without reporting an outcome")
    print(f"train: {result['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
