"""Two torchrun "nodes" on 127.0.0.1 (one process each) train exactly what one node with two processes trains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec
from lambda_repro.models import read_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(PROJECT_ROOT / "pipelines" / "train.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_params(directory: Path, manifest: Path, nproc_per_node: int, nnodes: int) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["model"]["name"] = "lambda_resnet26"
    params["data"]["manifest"] = str(manifest)
    params["train"].update(epochs=1, image_size=32, global_batch=4, workers=0)
    params["distributed"].update(nproc_per_node=nproc_per_node, nnodes=nnodes, max_restarts=0)
    params["tracking"].update(uri=f"sqlite:///{directory / 'mlflow.db'}", system_metrics=False)
    directory.mkdir(parents=True)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def launch(directory: Path, params: Path, **env: str) -> subprocess.Popen:
    # One thread per process in both layouts: a different thread count changes float rounding.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, TRAIN, "--params", str(params)],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]


@pytest.mark.slow
def test_two_nodes_on_localhost_match_one_node_with_two_processes(tmp_path):
    manifest = tmp_path / "data" / "manifest.json"
    spec = SyntheticSpec(classes=2, train_per_class=4, val_per_class=2, min_size=32, max_size=40)
    prepare_synthetic(str(tmp_path / "data" / "prepared"), str(manifest), spec, seed=0)

    single = tmp_path / "single"
    finish(launch(single, write_params(single, manifest, nproc_per_node=2, nnodes=1)))

    multi = tmp_path / "multi"
    params = write_params(multi, manifest, nproc_per_node=1, nnodes=2)
    port = str(free_port())
    nodes = [launch(multi, params, NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for rank in (0, 1)]
    for node in nodes:
        finish(node)

    one = read_checkpoint(single / "checkpoints" / "last.pt")
    two = read_checkpoint(multi / "checkpoints" / "last.pt")
    assert one["epoch"] == two["epoch"] == 1
    assert one["state_dict"].keys() == two["state_dict"].keys()
    for key, tensor in one["state_dict"].items():
        assert torch.equal(tensor, two["state_dict"][key]), key
    assert one["history"][0]["val_top1"] == two["history"][0]["val_top1"]
