"""Benchmark one model: counts, training / inference throughput, batch-1 latency, peak memory, GPU load.

:func:`benchmark_model` measures in the calling process; :func:`benchmark_models` runs
each model in a fresh spawned process, so that the CPU peak RSS (a per-process
high-water mark) of one model does not leak into the other's, and a CUDA context starts
clean. Inputs are random tensors already on the device: the figures are the model's
compute, without data loading.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from lambda_repro.config import check_given_values  # the one description of the profile knobs
from lambda_repro.models import LambdaLayer, create_model
from lambda_repro.models.lambda_position import choose_formulation
from lambda_repro.profiling.counting import count_macs, count_params
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads
from lambda_repro.profiling.gpu_sampler import GpuSampler, summarize_samples
from lambda_repro.profiling.memory import memory_kind, peak_bytes, reset_peak
from lambda_repro.profiling.precision import autocast, check_precision, grad_scaler
from lambda_repro.profiling.timing import percentile, summarize, throughput, time_repeated
from lambda_repro.training.optim import create_optimizer


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure and how; mirrors the ``profile`` section of params.yaml."""

    resolution: int = 224
    train_batch_sizes: tuple[int, ...] = (8,)
    inference_batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 1
    repeats: int = 3
    min_repeats: int = 2
    iters_per_repeat: int = 1
    latency_repeats: int = 10
    max_seconds: float | None = 10.0
    precision: str = "fp32"
    channels_last: bool | str = "auto"
    device: str = "auto"
    threads: int | None = None  # None: the idle cores (see cpu_threads)
    num_classes: int = 1000
    gpu_sample_interval_s: float = 0.1
    macs_resolution: int = 224
    optimizer: str = "sgd"  # train.optimizer: the training step is the trained recipe's

    def __post_init__(self) -> None:
        # Types and ranges of the profile knobs are checked once, with params.yaml (lambda_repro.config);
        # what is left here needs this machine.
        check_precision(self.precision)
        if self.threads is not None:
            resolve_threads(self.threads)  # raises on a bad value

    @classmethod
    def from_params(cls, section: dict, **overrides) -> BenchmarkConfig:
        """Build from (part of) the ``profile`` section, checked as params.yaml is; ``overrides`` are other fields."""
        check_given_values("profile", section, source="profile section")
        values = {**section, **overrides}
        for name in ("train_batch_sizes", "inference_batch_sizes"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolve_channels_last(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.channels_last == "auto" else bool(self.channels_last)


def environment(device: torch.device) -> dict:
    """Where the measurement ran: versions, device, threads."""
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": torch.cuda.device_count(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    return info


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def lambda_implementation_of(model: torch.nn.Module) -> str | None:
    """The formulation the model's lambda layers are set to (``None`` for a model without lambda layers)."""
    names = sorted({m.implementation for m in model.modules() if isinstance(m, LambdaLayer)})
    return ",".join(names) if names else None


def lambda_formulations_run(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """How many lambda layers compute each formulation on input ``x`` (``auto`` resolved per map size).

    One untimed forward with shape-recording hooks; ``{}`` for a model without lambda layers.
    """
    counts: dict[str, int] = {}

    def record(layer: LambdaLayer, inputs: tuple) -> None:
        _, _, h, w = inputs[0].shape
        name = layer.implementation
        if name == "auto":
            name = choose_formulation(h, w)
        counts[name] = counts.get(name, 0) + 1

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, LambdaLayer)]
    if not handles:
        return counts
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return dict(sorted(counts.items()))


def benchmark_model(name: str, config: BenchmarkConfig, model_kwargs: dict | None = None) -> dict:
    """Measure ``create_model(name, **model_kwargs)`` in this process; see the module docstring.

    Returns a JSON-ready dict; ``gpu_timeline`` holds the raw NVML samples (empty without a GPU).
    """
    torch.set_num_threads(resolve_threads(config.threads))
    device = config.resolve_device()
    channels_last = config.resolve_channels_last(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)

    model = create_model(name, **{"num_classes": config.num_classes, **(model_kwargs or {})})
    params = count_params(model)
    macs = count_macs(model, (1, 3, config.macs_resolution, config.macs_resolution))
    model = model.to(device=device, memory_format=memory_format)

    result: dict = {
        "model": name,
        "lambda_implementation": lambda_implementation_of(model),
        "params": params,
        "macs": macs,
        "flops": 2 * macs,
        "macs_resolution": config.macs_resolution,
        "resolution": config.resolution,
        "precision": config.precision,
        "channels_last": channels_last,
        "device": str(device),
        "memory_kind": memory_kind(device),
        "train": {},
        "inference": {},
        "peak_memory_mb": {},
        "gpu": {},
    }

    def batch(size: int) -> torch.Tensor:
        x = torch.randn(size, 3, config.resolution, config.resolution, device=device)
        return x.contiguous(memory_format=memory_format)

    timing = {
        "device": device,
        "warmup": config.warmup,
        "repeats": config.repeats,
        "min_repeats": config.min_repeats,
        "iters_per_repeat": config.iters_per_repeat,
        "max_seconds": config.max_seconds,
    }
    with GpuSampler(device, config.gpu_sample_interval_s) as sampler:
        # Order matters on CPU: the RSS high-water mark only grows, so the cheap phases go first.
        result["peak_memory_mb"]["model"] = peak_bytes(device) / 2**20
        model.eval()

        reset_peak(device)
        x1 = batch(1)
        result["lambda_formulations"] = lambda_formulations_run(model, x1)
        with torch.inference_mode(), autocast(device, config.precision):
            latency = time_repeated(
                lambda: model(x1),
                **{**timing, "repeats": config.latency_repeats, "iters_per_repeat": 1},
                timed_window=partial(sampler.window, "latency_bs1"),
            )
        latency_ms = [s * 1000 for s in latency]
        stats = summarize(latency_ms)
        result["latency_ms"] = {
            "p50": stats["median"],
            "p95": percentile(latency_ms, 95),
            **{key: stats[key] for key in ("p25", "p75", "min", "max", "n")},
        }

        for size in config.inference_batch_sizes:
            label = f"inference_bs{size}"
            try:
                x = batch(size)
                with torch.inference_mode(), autocast(device, config.precision):
                    seconds = time_repeated(lambda x=x: model(x), **timing, timed_window=partial(sampler.window, label))
                result["inference"][f"bs{size}"] = throughput(seconds, size)
            except torch.OutOfMemoryError:
                result["inference"][f"bs{size}"] = _out_of_memory(device)
        result["peak_memory_mb"]["inference"] = peak_bytes(device) / 2**20

        model.train()
        # The trained recipe's optimizer; a small lr keeps random-label steps finite (the step's cost does not
        # depend on it).
        optimizer = create_optimizer(config.optimizer, model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        scaler = grad_scaler(device, config.precision)
        reset_peak(device)

        def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.precision):
                loss = F.cross_entropy(model(x), y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

        # A batch size too large for the device is recorded, not fatal: the other sizes are still measured.
        for size in config.train_batch_sizes:
            label = f"train_bs{size}"
            try:
                x = batch(size)
                y = torch.randint(0, config.num_classes, (size,), device=device)
                window = partial(sampler.window, label)
                seconds = time_repeated(partial(train_step, x, y), **timing, timed_window=window)
                result["train"][f"bs{size}"] = throughput(seconds, size)
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                result["train"][f"bs{size}"] = _out_of_memory(device)
        result["peak_memory_mb"]["train"] = peak_bytes(device) / 2**20

    result["gpu_timeline"] = sampler.samples
    if sampler.unavailable:
        result["gpu"] = {"unavailable": sampler.unavailable}
    else:
        labels = dict.fromkeys(s["label"] for s in sampler.samples)
        result["gpu"] = {label: summarize_samples(sampler.samples, label) for label in labels}
    return result


def benchmark_models(models: dict[str, dict], config: BenchmarkConfig, *, isolate: bool = True) -> dict[str, dict]:
    """:func:`benchmark_model` for each ``{name: create_model kwargs}``, each in a fresh spawned process.

    ``threads: None`` (the idle cores) is resolved once here, so every model runs with the same thread count.
    ``isolate=False`` measures in this process (faster to start; peak RSS then mixes models).
    """
    config = replace(config, threads=resolve_threads(config.threads))
    results = {}
    for name, kwargs in models.items():
        if not isolate:
            results[name] = benchmark_model(name, config, kwargs)
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results[name] = pool.submit(benchmark_model, name, config, kwargs).result()
    return results


def settings(config: BenchmarkConfig, load_before: float | None = None) -> dict:
    """The configuration and environment a profile was measured with, for the metrics file.

    Pass the config as measured (``threads`` resolved) and the load average read before measuring:
    a busy machine (load above its CPU count) makes every timing slower than on an idle one.
    """
    device = config.resolve_device()
    return {
        **asdict(config),
        "load_average_1m": {"before": load_before, "after": load_average()},
        "channels_last": config.resolve_channels_last(device),
        "environment": environment(device),
        "memory_kind": memory_kind(device),
        "isolation": "one spawned process per model",
        "inputs": "random tensors on the device (no data loading)",
    }


def _out_of_memory(device: torch.device) -> dict:
    """The record of a batch size that did not fit (CUDA OOM); frees the cache so the next size starts clean.

    Meant for GPUs and not run on one in this project yet (on CPU the OS kills the process instead).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"error": "out of memory"}
