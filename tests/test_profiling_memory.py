"""Profile memory per batch size: each size its own peak (reset before it), an out-of-memory attempt never a peak.

A fake allocator stands in for CUDA's (resettable peak, an OOM at one batch size), so the
bookkeeping that only a GPU exercises runs on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from lambda_repro.profiling import benchmark
from lambda_repro.profiling.benchmark import BenchmarkConfig, benchmark_model

MIB = 2**20


class FakeAllocator:
    """A resettable peak; every forward "allocates" 10 MiB per image."""

    def __init__(self) -> None:
        self.peak = 0

    def reset(self, device) -> None:
        self.peak = 0

    def peak_bytes(self, device) -> int:
        return self.peak


class Allocating(nn.Module):
    def __init__(self, allocator: FakeAllocator, oom_train_batch: int, num_classes: int = 10) -> None:
        super().__init__()
        self.allocator = allocator
        self.oom_train_batch = oom_train_batch
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if self.training and batch == self.oom_train_batch:
            self.allocator.peak = 10**12  # the allocator's peak when it gave up
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        self.allocator.peak = max(self.allocator.peak, 10 * MIB * batch)
        return self.body(x)


def test_each_batch_size_has_its_own_peak_and_an_oom_is_never_one(monkeypatch):
    allocator = FakeAllocator()
    monkeypatch.setattr(benchmark, "reset_peak", allocator.reset)
    monkeypatch.setattr(benchmark, "peak_bytes", allocator.peak_bytes)
    monkeypatch.setattr(benchmark, "create_model", lambda name, num_classes: Allocating(allocator, 4, num_classes))
    config = BenchmarkConfig(
        resolution=16,
        train_batch_sizes=(2, 4, 3),
        inference_batch_sizes=(5, 1),
        warmup=0,
        repeats=1,
        min_repeats=1,
        latency_repeats=1,
        max_seconds=None,
        macs_resolution=16,
        num_classes=10,
        threads=1,
    )
    result = benchmark_model("allocating", config)
    assert result["train"]["bs4"] == {"error": "out of memory"}
    # Sizes after the OOM start from a reset: bs3 has its own 30 MiB, not the failed attempt's peak.
    assert [result["train"][k]["peak_memory_mb"] for k in ("bs2", "bs3")] == [20.0, 30.0]
    assert result["peak_memory_mb"]["train"] == 30.0
    # Inference: bs1 after bs5 is reset, so it shows 10, not 50.
    assert [result["inference"][k]["peak_memory_mb"] for k in ("bs5", "bs1")] == [50.0, 10.0]
    assert result["peak_memory_mb"]["inference"] == 50.0


def test_no_train_peak_when_every_size_ran_out_of_memory(monkeypatch):
    allocator = FakeAllocator()
    monkeypatch.setattr(benchmark, "reset_peak", allocator.reset)
    monkeypatch.setattr(benchmark, "peak_bytes", allocator.peak_bytes)
    monkeypatch.setattr(benchmark, "create_model", lambda name, num_classes: Allocating(allocator, 2, num_classes))
    config = BenchmarkConfig(
        resolution=16,
        train_batch_sizes=(2,),
        inference_batch_sizes=(1,),
        warmup=0,
        repeats=1,
        min_repeats=1,
        latency_repeats=1,
        max_seconds=None,
        macs_resolution=16,
        threads=1,
    )
    result = benchmark_model("allocating", config)
    assert result["train"] == {"bs2": {"error": "out of memory"}}
    assert "train" not in result["peak_memory_mb"]
