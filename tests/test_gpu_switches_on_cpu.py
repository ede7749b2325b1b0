"""Every switch a GPU run flips, forced on in a short CPU run, with values asserted.

In-process training (a world of one; lambda_resnet26 at 32 px, 8 images, batch 4: 2 steps an
epoch). The default run is trained once (module fixture) and each switch compared with it:
bit-identical where the switch must not change the arithmetic (loader workers, persistent
workers, pin_memory, host syncs every N steps), finite and recorded where it does (autocast,
channels_last).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec
from lambda_repro.distributed import DistributedContext
from lambda_repro.metrics_files import read_metrics
from lambda_repro.models import read_checkpoint
from lambda_repro.profiling.benchmark import BenchmarkConfig, benchmark_model
from lambda_repro.training import TrainConfig, train
from lambda_repro.training import resume as resume_module
from lambda_repro.training.device_options import resolve_channels_last, resolve_pin_memory, resolve_precision
from lambda_repro.training.resume import ResumePoint, resume_disagreement

SINGLE = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    spec = SyntheticSpec(classes=2, train_per_class=4, val_per_class=3, min_size=32, max_size=40)
    prepare_synthetic(str(root / "prepared"), str(root / "manifest.json"), spec, seed=0)
    return str(root / "manifest.json")


def tiny_config(manifest: str, out: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        model="lambda_resnet26",
        manifest=manifest,
        epochs=2,
        image_size=32,
        global_batch=4,
        world_size=1,
        base_lr=0.1,
        eval_batch_size=4,
        checkpoint=str(out / "last.pt"),
        metrics_dir=str(out / "metrics"),
        progress=False,
    )
    return dataclasses.replace(config, **changes)


def trained(manifest: str, out: Path, **changes) -> dict:
    torch.set_num_threads(1)  # the same float rounding in every run
    result = train(tiny_config(manifest, out, **changes), SINGLE)
    assert result.status == "finished", result.message
    return read_checkpoint(out / "last.pt")


@pytest.fixture(scope="module")
def default_run(manifest, tmp_path_factory) -> dict:
    return trained(manifest, tmp_path_factory.mktemp("default"))


def assert_same_weights(one: dict, two: dict) -> None:
    assert one["state_dict"].keys() == two["state_dict"].keys()
    for key, tensor in one["state_dict"].items():
        assert torch.equal(tensor, two["state_dict"][key]), key


def test_switch_resolution_on_cpu():
    assert resolve_precision("bf16", CPU, cpu_autocast=True) is torch.bfloat16
    assert resolve_precision("fp16", CPU, cpu_autocast=True) is torch.float16
    with pytest.warns(UserWarning, match="train.cpu_autocast: true forces it"):
        assert resolve_precision("bf16", CPU) is None
    assert resolve_pin_memory("auto", CPU) is False and resolve_pin_memory(True, CPU) is True
    assert resolve_channels_last("auto", CPU) is True and resolve_channels_last(False, CPU) is False
    assert resolve_channels_last("auto", torch.device("cuda")) is True


@pytest.mark.slow
def test_loader_workers_persistent_workers_and_pin_memory_change_nothing(manifest, tmp_path, default_run):
    # Augmentation is seeded per (seed, epoch, image): which process loads an image does not matter.
    loaded = trained(manifest, tmp_path, workers=2, persistent_workers=True, pin_memory=True)
    assert_same_weights(default_run, loaded)
    assert loaded["history"] == [
        {**row, "img_per_s": new["img_per_s"], "epoch_s": new["epoch_s"]}
        for row, new in zip(default_run["history"], loaded["history"], strict=True)
    ]


@pytest.mark.slow
def test_host_syncs_every_3_steps_change_nothing(manifest, tmp_path, default_run):
    synced = trained(manifest, tmp_path, sync_every=3)  # 4 steps: one sync inside, one at each epoch's end
    assert_same_weights(default_run, synced)
    assert [r["train_loss"] for r in synced["history"]] == [r["train_loss"] for r in default_run["history"]]
    assert [r["train_top1"] for r in synced["history"]] == [r["train_top1"] for r in default_run["history"]]


@pytest.mark.slow
def test_nan_found_by_a_late_sync_names_its_own_step(manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDA_REPRO_FAULT_NAN_AT_STEP", "2")  # epoch 2, step 0
    torch.set_num_threads(1)
    result = train(tiny_config(manifest, tmp_path, sync_every=5), SINGLE)
    assert result.status == "failed"
    # Found at the epoch's end (window of steps 2 and 3), reported at step 2.
    assert "non-finite loss (nan) at epoch 2, step 0 (global step 2" in result.message
    kept = read_checkpoint(tmp_path / "last.pt")
    assert kept["epoch"] == 1 and kept["finished"] is False  # the last good checkpoint, not the NaN weights


@pytest.mark.slow
def test_a_stop_in_an_epochs_last_window_is_honoured_before_the_next_epoch(manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDA_REPRO_FAULT_TERM_AT_STEP", "1")  # SIGTERM to this process at epoch 1, step 1
    torch.set_num_threads(1)
    result = train(tiny_config(manifest, tmp_path, sync_every=5), SINGLE)
    assert result.status == "preempted"
    # Seen at epoch 1's closing sync (after its last step): epoch 1 completes, epoch 2 stops before its step 0.
    assert "at epoch 2, step 0" in result.message
    saved = read_checkpoint(tmp_path / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], len(saved["history"])) == (1, 0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cpu_autocast_trains_finite_and_fp16_scales_the_loss(manifest, tmp_path, precision):
    checkpoint = trained(manifest, tmp_path, precision=precision, cpu_autocast=True)
    history = checkpoint["history"]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)
    summary = read_metrics(tmp_path / "metrics" / "train.json")
    assert summary["epochs"] == 2 and 0 <= summary["final_val_top1"] <= 100
    if precision == "fp16":
        assert checkpoint["scaler"]["scale"] > 0  # the GradScaler ran (torch.amp.GradScaler("cpu"))
    else:
        assert "scaler" not in checkpoint


@pytest.mark.slow
def test_channels_last_trains_to_nearly_the_same_weights(manifest, tmp_path, default_run):
    # The default (auto) is channels_last on CPU too: forced on, it is the default bit for bit; off, NCHW
    # (other kernels, other rounding) lands within rounding of it.
    nhwc = trained(manifest, tmp_path / "on", channels_last=True)
    assert_same_weights(nhwc, default_run)
    nchw = trained(manifest, tmp_path / "off", channels_last=False)
    assert not torch.equal(nchw["state_dict"]["fc.weight"], default_run["state_dict"]["fc.weight"])
    for key, tensor in default_run["state_dict"].items():
        if tensor.is_floating_point():
            torch.testing.assert_close(nchw["state_dict"][key], tensor, rtol=1e-3, atol=1e-4, msg=key)


def test_nodes_that_see_different_checkpoints_are_named_in_one_line(tmp_path, monkeypatch):
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"weights")
    point = ResumePoint(epoch=3)
    mine = ("node 0 (host-a)", (3, 0, resume_module.file_digest(checkpoint)))
    monkeypatch.setattr(resume_module, "all_gather_object", lambda value, context: [mine, mine, value, value])
    monkeypatch.setattr(resume_module, "node_name", lambda: "node 1 (host-b)")
    assert resume_disagreement(point, checkpoint, SINGLE) is None  # same file, same point
    checkpoint.unlink()
    message = resume_disagreement(ResumePoint(), checkpoint, SINGLE)
    assert "\n" not in message
    assert f"node 0 (host-a): epoch 3 step 0 of {mine[1][2]}" in message
    assert "node 1 (host-b): no checkpoint to resume" in message


@pytest.mark.parametrize(
    ("precision", "channels_last"),
    [("bf16", False), ("fp16", False), ("fp32", True)],
)
def test_profile_runs_each_gpu_switch_on_cpu(precision, channels_last):
    config = BenchmarkConfig(
        resolution=32,
        train_batch_sizes=(2,),
        inference_batch_sizes=(2,),
        warmup=0,
        repeats=1,
        min_repeats=1,
        latency_repeats=1,
        max_seconds=None,
        macs_resolution=32,
        num_classes=10,
        precision=precision,
        channels_last=channels_last,
        threads=1,
    )
    result = benchmark_model("lambda_resnet26", config)
    assert result["precision"] == precision and result["channels_last"] is channels_last
    assert result["train"]["bs2"]["median"] > 0 and result["inference"]["bs2"]["median"] > 0
    assert result["peak_memory_mb"]["train"] > 0
