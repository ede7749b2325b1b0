"""The train and evaluate stages over torchrun on CPU: fewer processes with accumulation, sharded evaluation,
nodes that disagree on the resume point, and more processes than GPUs.

Each run is a real stage in a subprocess (lambda_resnet26 at 32 px, a handful of images),
one thread per process so that layouts compare at the same float rounding.
"""

from __future__ import annotations

import json
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
from lambda_repro.metrics_files import read_metrics
from lambda_repro.models import create_model, read_checkpoint, save_checkpoint
from lambda_repro.training.determinism import ResumableDistributedSampler
from lambda_repro.training.launch import device_count_problem
from lambda_repro.training.trainer import zero_init_residual_branches

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(PROJECT_ROOT / "pipelines" / "train.py")
EVALUATE = str(PROJECT_ROOT / "pipelines" / "evaluate.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    # 3 classes x 3 val images: 9, odd, so 2 shards hold 5 and 4.
    spec = SyntheticSpec(classes=3, train_per_class=4, val_per_class=3, min_size=32, max_size=40)
    prepare_synthetic(str(root / "prepared"), str(root / "manifest.json"), spec, seed=0)
    return root / "manifest.json"


def write_params(directory: Path, manifest: Path, *, train=None, distributed=None, evaluate=None) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["model"]["name"] = "lambda_resnet26"
    params["data"]["manifest"] = str(manifest)
    params["train"].update({"epochs": 1, "image_size": 32, "global_batch": 4, "workers": 0, **(train or {})})
    params["distributed"].update({"nproc_per_node": 2, "nnodes": 1, "max_restarts": 0, **(distributed or {})})
    params["evaluate"].update({"image_size": 32, "batch_size": 2, **(evaluate or {})})
    params["tracking"].update(uri=f"sqlite:///{directory / 'mlflow.db'}", system_metrics=False)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def launch(script: str, directory: Path, params: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, script, "--params", str(params)],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, expected: int = 0) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == expected, output[-5000:]
    return output


def test_one_rank_with_two_accumulation_steps_sees_what_two_ranks_see():
    micro = 3
    two_ranks = [
        ResumableDistributedSampler(range(25), num_replicas=2, rank=r, shuffle=True, seed=1, drop_last=True)
        for r in (0, 1)
    ]
    one_rank = ResumableDistributedSampler(
        range(25), num_replicas=1, rank=0, shuffle=True, seed=1, drop_last=True, accumulation_steps=2, micro_batch=micro
    )
    for sampler in (*two_ranks, one_rank):
        sampler.set_position(epoch=4, skip=0)
    shards = [list(s) for s in two_ranks]
    order = list(one_rank)
    assert one_rank.steps_per_epoch == 12 // micro == 4
    for step in range(one_rank.steps_per_epoch):
        for k in range(2):
            start = (step * 2 + k) * micro
            assert order[start : start + micro] == shards[k][step * micro : (step + 1) * micro]
    one_rank.set_position(epoch=4, skip=2 * micro)  # resumed after one optimizer step
    assert list(one_rank) == order[2 * micro :]


def test_more_processes_than_visible_gpus_is_one_line(monkeypatch):
    assert device_count_problem(64) is None  # no CUDA here: no limit
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert device_count_problem(2) is None
    assert device_count_problem(8) == (
        "distributed.nproc_per_node: 8 processes but only 2 CUDA device(s) are visible (CUDA_VISIBLE_DEVICES=0,1); "
        "one process per GPU"
    )


def test_the_train_stage_refuses_more_processes_than_gpus_before_launch(manifest, tmp_path, monkeypatch, capsys):
    from pipelines import train as train_stage

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(train_stage, "run_torchrun", lambda *a: pytest.fail("launched"))
    params = write_params(tmp_path, manifest)
    assert train_stage.main(["--params", str(params), "--metrics-dir", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "train: error: distributed.nproc_per_node: 2 processes but only 1 CUDA device(s) are visible; "
        "one process per GPU"
    ]


@pytest.mark.slow
def test_one_process_accumulating_two_steps_trains_the_weights_of_two_processes(manifest, tmp_path):
    two = tmp_path / "two"
    finish(launch(TRAIN, two, write_params(two, manifest, distributed={"nproc_per_node": 2})))
    one = tmp_path / "one"
    params = write_params(one, manifest, train={"accumulation_steps": 2}, distributed={"nproc_per_node": 1})
    finish(launch(TRAIN, one, params))
    a, b = read_checkpoint(two / "checkpoints" / "last.pt"), read_checkpoint(one / "checkpoints" / "last.pt")
    # The same images per micro-batch, so BatchNorm normalises with the same batch statistics; the mean
    # gradient is DDP's (g0 + g1) / 2 against g0 / 2 + g1 / 2 here: equal up to float rounding. Running
    # statistics differ by design (two ranks: rank 0's only; one rank: both micro-batches in turn).
    parameters = dict(create_model("lambda_resnet26", num_classes=3).named_parameters())
    for key in parameters:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=1e-5, atol=1e-6, msg=key)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-5)
    assert read_metrics(one / "metrics" / "train.json")["world_size"] == 1


@pytest.mark.slow
def test_two_process_evaluation_counts_exactly_what_one_process_counts(manifest, tmp_path):
    # A checkpoint of the dataset's classes (random weights: the counts are what is compared); blocks start
    # as the identity, so that untrained logits stay finite and the loss sums compare too.
    torch.manual_seed(0)
    model = create_model("lambda_resnet26", num_classes=3)
    zero_init_residual_branches(model)
    classes = json.loads(manifest.read_text())["classes"]
    checkpoint = tmp_path / "model.pt"
    save_checkpoint({"state_dict": model.state_dict(), "arch": "lambda_resnet26", "classes": classes}, checkpoint)
    scores = {}
    for name, nproc, train in (
        ("one", 1, {}),
        ("two", 2, {"workers": 1, "pin_memory": True}),
        ("two_bf16", 2, {"workers": 1, "precision": "bf16", "cpu_autocast": True}),
    ):
        directory = tmp_path / name
        params = write_params(
            directory,
            manifest,
            train=train,
            distributed={"nproc_per_node": nproc},
            evaluate={"checkpoint": str(checkpoint)},
        )
        finish(launch(EVALUATE, directory, params))
        scores[name] = read_metrics(directory / "metrics" / "eval.json")
    one, two = scores["one"], scores["two"]
    assert one["images"] == two["images"] == 9  # 5 + 4: none lost, none twice
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert (one["top1"], one["top5"]) == (two["top1"], two["top5"])
    assert two["loss"] == pytest.approx(one["loss"], abs=1.01e-4)  # eval.json keeps 4 decimals: one unit apart at most
    bf16 = scores["two_bf16"]
    assert bf16["images"] == 9 and bf16["loss"] is not None and 0 <= bf16["top1"] <= 100


@pytest.mark.slow
def test_nodes_with_different_checkpoints_stop_with_one_line_naming_them(manifest, tmp_path):
    # Two "nodes" on 127.0.0.1, each its own working directory (node-local disks): the first run's
    # checkpoint lands only on the node where rank 0 ran; the second run must refuse to start.
    nodes = [tmp_path / "node0", tmp_path / "node1"]

    def run_both(expected: int) -> list[str]:
        port = str(free_port())
        processes = []
        for rank, directory in enumerate(nodes):
            params = write_params(directory, manifest, distributed={"nproc_per_node": 1, "nnodes": 2})
            env = {"NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
            processes.append(launch(TRAIN, directory, params, **env))
        return [finish(p, expected) for p in processes]

    run_both(0)
    has_checkpoint = [(d / "checkpoints" / "last.pt").is_file() for d in nodes]
    assert sorted(has_checkpoint) == [False, True]
    outputs = run_both(1)
    for output in outputs:
        errors = [line for line in output.splitlines() if line.startswith("train: error:")]
        assert len(errors) == 1, output[-3000:]
        assert "the nodes disagree on the resume point" in errors[0]
        assert "node 0 (" in errors[0] and "node 1 (" in errors[0] and "no checkpoint to resume" in errors[0]
