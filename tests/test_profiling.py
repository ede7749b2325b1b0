"""Profiling: timing discipline, memory and GPU sampling on CPU, precision, and tiny end-to-end benchmarks."""

from __future__ import annotations

import os

import numpy as np
import psutil
import pytest
import torch

from lambda_repro.models import LambdaLayer, create_model
from lambda_repro.profiling import (
    BenchmarkConfig,
    benchmark_model,
    benchmark_models,
    count_macs,
    flat_profile_metrics,
    timeline_rows,
)
from lambda_repro.profiling.gpu_sampler import GpuSampler, summarize_samples
from lambda_repro.profiling.memory import CPU_KIND, memory_kind, peak_bytes
from lambda_repro.profiling.precision import autocast, grad_scaler
from lambda_repro.profiling.timing import percentile, summarize, throughput, time_repeated

CPU = torch.device("cpu")


class FakeClock:
    """Each step advances time by the next of ``durations``; the clock reads the running total."""

    def __init__(self, durations: list[float]) -> None:
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0

    def step(self) -> None:
        self.calls += 1
        self.now += self.durations.pop(0)

    def __call__(self) -> float:
        return self.now


def test_warmup_is_not_timed_and_each_repeat_is_one_sample():
    clock = FakeClock([100.0, 1.0, 2.0, 3.0])
    samples = time_repeated(clock.step, device=CPU, warmup=1, repeats=3, clock=clock)
    assert samples == [1.0, 2.0, 3.0]
    assert clock.calls == 4


def test_iters_per_repeat_averages_within_a_repeat():
    clock = FakeClock([1.0, 3.0, 2.0, 2.0])
    samples = time_repeated(clock.step, device=CPU, warmup=0, repeats=2, iters_per_repeat=2, clock=clock)
    assert samples == [2.0, 2.0]


def test_time_cap_stops_early_but_not_before_min_repeats():
    clock = FakeClock([5.0] * 10)
    samples = time_repeated(clock.step, device=CPU, warmup=0, repeats=10, min_repeats=3, max_seconds=4.0, clock=clock)
    assert len(samples) == 3  # over the cap after the first, yet three repetitions for a spread
    clock = FakeClock([1.0] * 10)
    assert len(time_repeated(clock.step, device=CPU, warmup=0, repeats=10, max_seconds=4.5, clock=clock)) == 5


def test_timed_window_wraps_only_the_timed_repeats():
    events = []

    class Window:
        def __enter__(self):
            events.append("enter")

        def __exit__(self, *exc):
            events.append("exit")

    time_repeated(lambda: events.append("step"), device=CPU, warmup=2, repeats=2, timed_window=Window)
    assert events == ["step", "step", "enter", "step", "step", "exit"]


def test_percentiles_and_summary_match_numpy():
    values = [4.0, 1.0, 3.0, 10.0, 2.0, 7.0]
    for q in (0, 25, 50, 75, 95, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    stats = summarize(values)
    assert stats == {"median": 3.5, "p25": 2.25, "p75": 6.25, "min": 1.0, "max": 10.0, "n": 6}


def test_throughput_converts_each_repeat_then_summarises():
    stats = throughput([0.5, 1.0, 2.0], batch_size=8)
    assert stats["median"] == 8.0 and stats["min"] == 4.0 and stats["max"] == 16.0


def test_cpu_peak_memory_is_the_process_rss_high_water_mark():
    assert memory_kind(CPU) == CPU_KIND
    assert peak_bytes(CPU) >= psutil.Process().memory_info().rss * 0.99


def test_gpu_sampler_is_a_clean_no_op_on_cpu():
    with GpuSampler(CPU, interval_s=0.01) as sampler:
        with sampler.window("train_bs8"):
            torch.ones(10).sum()
    assert sampler.samples == []
    assert sampler.unavailable == "no GPU: measured on cpu"


def test_gpu_sampler_without_driver_says_why():
    # No NVIDIA driver here: NVML's init fails and the sampler reports it instead of raising.
    sampler = GpuSampler(torch.device("cuda", 0)).start()
    sampler.stop()
    assert sampler.unavailable is not None and sampler.unavailable.startswith("NVML unavailable")
    assert sampler.samples == []


def test_summarize_samples_per_label():
    samples = [
        {"t_s": 0.1, "label": "a", "utilization_percent": 50.0, "memory_used_mb": 100.0},
        {"t_s": 0.2, "label": "a", "utilization_percent": 100.0, "memory_used_mb": 300.0},
        {"t_s": 0.3, "label": "b", "utilization_percent": 10.0, "memory_used_mb": 50.0},
    ]
    assert summarize_samples(samples, "a") == {
        "utilization_mean_percent": 75.0,
        "utilization_max_percent": 100.0,
        "memory_used_max_mb": 300.0,
        "samples": 2,
    }
    assert summarize_samples(samples, "c") is None


def test_precision_autocast_and_scaler():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(CPU, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32
    assert grad_scaler(CPU, "fp32") is None and grad_scaler(CPU, "bf16") is None
    with pytest.raises(ValueError, match="precision"):
        autocast(CPU, "fp8")


def test_config_from_params_rejects_typos_and_bad_values():
    config = BenchmarkConfig.from_params({"train_batch_sizes": [8, 16], "precision": "bf16"})
    assert config.train_batch_sizes == (8, 16) and config.precision == "bf16"
    assert config.resolve_device() == CPU and config.resolve_channels_last(CPU) is False
    with pytest.raises(ValueError, match="unknown parameter.*repeat"):
        BenchmarkConfig.from_params({"repeat": 3})
    with pytest.raises(ValueError, match="train_batch_sizes"):
        BenchmarkConfig.from_params({"train_batch_sizes": [0]})
    with pytest.raises(ValueError, match="precision"):
        BenchmarkConfig.from_params({"precision": "fp64"})


TINY = BenchmarkConfig(
    resolution=32,
    train_batch_sizes=(2,),
    inference_batch_sizes=(1, 2),
    warmup=1,
    repeats=2,
    latency_repeats=3,
    max_seconds=None,
    macs_resolution=64,
)


def test_benchmark_model_records_counts_timings_and_memory():
    result = benchmark_model("lambda_resnet26", TINY)
    model = create_model("lambda_resnet26")
    assert result["params"] == 10_125_800
    assert result["macs"] == count_macs(model, (1, 3, 64, 64)) and result["flops"] == 2 * result["macs"]
    assert result["lambda_implementation"] == model.layer1[0].conv2.implementation
    layers = [m for m in model.modules() if isinstance(m, LambdaLayer)]
    assert sum(result["lambda_formulations"].values()) == len(layers)
    assert set(result["lambda_formulations"]) <= {"dense", "spectral", "reference"}  # "auto" resolved per map size
    assert sorted(result["train"]) == ["bs2"] and sorted(result["inference"]) == ["bs1", "bs2"]
    assert result["train"]["bs2"]["n"] == 2 and result["latency_ms"]["n"] == 3
    assert 0 < result["train"]["bs2"]["min"] <= result["train"]["bs2"]["median"] <= result["train"]["bs2"]["max"]
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p95"]
    assert result["memory_kind"] == CPU_KIND
    peaks = result["peak_memory_mb"]
    assert 0 < peaks["model"] <= peaks["inference"] <= peaks["train"]  # a high-water mark only grows
    assert result["gpu"] == {"unavailable": "no GPU: measured on cpu"} and result["gpu_timeline"] == []


@pytest.mark.slow
def test_benchmark_models_runs_each_model_in_its_own_process():
    results = benchmark_models({"resnet50": {}, "lambda_resnet26": {"lambda_implementation": "reference"}}, TINY)
    assert list(results) == ["resnet50", "lambda_resnet26"]
    assert results["resnet50"]["params"] == 25_557_032
    assert results["resnet50"]["lambda_implementation"] is None
    assert results["lambda_resnet26"]["lambda_implementation"] == "reference"
    flat = flat_profile_metrics(results)
    assert flat["profile/resnet50/params"] == 25_557_032.0
    assert flat["profile/lambda_resnet26/train_img_s_bs2"] == results["lambda_resnet26"]["train"]["bs2"]["median"]


def test_flat_metrics_and_timeline_layout():
    results = {
        "m": {
            "params": 10,
            "macs": 20,
            "flops": 40,
            "train": {"bs8": {"median": 2.0, "p25": 1.5, "p75": 2.5}},
            "inference": {},
            "latency_ms": {"p50": 5.0, "p95": 9.0},
            "peak_memory_mb": {"train": 100.0},
            "gpu": {"train_bs8": {"utilization_mean_percent": 90.0, "memory_used_max_mb": 5000.0}},
            "gpu_timeline": [{"t_s": 0.5, "label": "train_bs8", "utilization_percent": 90.0, "memory_used_mb": 1.0}],
        },
        "n": {"gpu_timeline": [{"t_s": 0.25, "label": "x", "utilization_percent": 1.0, "memory_used_mb": 1.0}]},
    }
    flat = flat_profile_metrics(results)
    assert flat == {
        "profile/m/params": 10.0,
        "profile/m/macs": 20.0,
        "profile/m/flops": 40.0,
        "profile/m/train_img_s_bs8": 2.0,
        "profile/m/train_img_s_bs8_p25": 1.5,
        "profile/m/train_img_s_bs8_p75": 2.5,
        "profile/m/latency_ms_p50": 5.0,
        "profile/m/latency_ms_p95": 9.0,
        "profile/m/peak_memory_mb_train": 100.0,
        "profile/m/gpu_utilization_mean_train_bs8": 90.0,
        "profile/m/gpu_memory_used_max_mb_train_bs8": 5000.0,
    }
    rows = timeline_rows(results)
    assert [(r["model"], r["t_s"]) for r in rows] == [("m", 0.5), ("n", 1.75)]


def test_auto_threads_use_the_idle_cores():
    from lambda_repro.profiling.cpu_threads import idle_cores, resolve_threads

    assert idle_cores(cpu_count=2, load=0.2) == 2
    assert idle_cores(cpu_count=2, load=0.8) == 1
    assert idle_cores(cpu_count=2, load=9.5) == 1  # never fewer than one
    assert idle_cores(cpu_count=16, load=3.4) == 13
    assert resolve_threads(3) == 3
    assert 1 <= resolve_threads(None) <= (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(0)
    with pytest.raises(ValueError, match="threads"):
        BenchmarkConfig(threads="auto")
