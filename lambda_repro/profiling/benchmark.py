"""Benchmark one model: counts, training / inference throughput, batch-1 latency, peak memory, GPU load.

:func:`benchmark_model` measures in the calling process; :func:`benchmark_models` runs
each model in a fresh spawned process, so that the CPU peak RSS (a per-process
high-water mark) of one model does not leak into the other's, and a CUDA context starts
clean. Inputs are random tensors already on the device: the figures are the model's
compute, without data loading.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from lambda_repro.config import check_given_values  # the one description of the profile knobs
from lambda_repro.models import LambdaLayer, benchmark_formulations, create_model, formulation_choices
from lambda_repro.profiling.counting import count_macs, count_params
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads
from lambda_repro.profiling.gpu_sampler import GpuSampler, summarize_samples
from lambda_repro.profiling.memory import memory_kind, peak_bytes, reset_peak
from lambda_repro.profiling.paired_ratio import paired_ratio
from lambda_repro.profiling.precision import autocast, check_precision, grad_scaler
from lambda_repro.profiling.timing import percentile, summarize, throughput, time_repeated
from lambda_repro.training.device_options import resolve_channels_last
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
    max_ratio_ci_width: float = 0.25  # a ratio whose 95% interval is wider (high / low - 1) is flagged
    # model.lambda_implementation: measured: "auto" layers time the exact formulations on each phase's first
    # (untimed) call, as cudnn.benchmark does, so every phase (batch, train / inference) runs its fastest.
    measure_formulations: bool = False

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
        return resolve_channels_last(self.channels_last, device)


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


def lambda_formulations_run(model: torch.nn.Module, x: torch.Tensor | None = None) -> dict[str, int]:
    """How many lambda layers compute each formulation (``{}`` for a model without lambda layers).

    With ``x``, after one untimed forward on it; else what each layer's last call ran (its setting if pinned).
    """
    if not any(isinstance(m, LambdaLayer) for m in model.modules()):
        return {}
    if x is not None:
        with torch.inference_mode():
            model(x)
    counts: dict[str, int] = {}
    for name in formulation_choices(model).values():
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


class ModelBench:
    """One model set up for measuring, one repetition of one phase at a time (see :func:`benchmark_model`).

    Phases, in the order :meth:`phases` lists them: ``latency_bs1`` (one batch-1 call per repetition),
    ``inference_bs<N>``, ``train_bs<N>``. The first repetition of a phase runs ``config.warmup`` untimed
    calls before it. Order matters on CPU: the RSS high-water mark only grows, so the cheap phases go
    first and the peak of each kind (inference, train) is read when the next kind starts.
    """

    def __init__(self, name: str, config: BenchmarkConfig, model_kwargs: dict | None = None) -> None:
        torch.set_num_threads(resolve_threads(config.threads))
        self.config = config
        self.device = device = config.resolve_device()
        channels_last = config.resolve_channels_last(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(0)

        model = create_model(name, **{"num_classes": config.num_classes, **(model_kwargs or {})})
        if config.measure_formulations:
            benchmark_formulations(model)
        params = count_params(model)
        macs = count_macs(model, (1, 3, config.macs_resolution, config.macs_resolution))
        self.model = model.to(device=device, memory_format=self.memory_format)
        self.result: dict = {
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
            "peak_memory_mb": {"model": peak_bytes(device) / 2**20},
            "gpu": {},
            "samples_s": {},
        }
        self.sampler = GpuSampler(device, config.gpu_sample_interval_s).start()
        self.model.eval()
        reset_peak(device)
        self.result["lambda_formulations"] = lambda_formulations_run(self.model, self._batch(1))
        # Per layer, what that forward ran: the record a training run's choices are compared with.
        self.result["lambda_formulation_choices"] = formulation_choices(self.model)
        self.result["lambda_formulations_measured"] = config.measure_formulations
        self.result["lambda_formulations_by_phase"] = {}  # what each phase ran (measured: may differ by phase)
        self._kind: str | None = None  # "inference" or "train": the phase kind running now
        self._steps: dict[str, object] = {}
        self._failed: set[str] = set()
        self._peaks: dict[str, float] = {}  # MiB per phase: the highest of its repetitions, each after a reset

    def phases(self) -> list[str]:
        config = self.config
        return [
            "latency_bs1",
            *(f"inference_bs{b}" for b in config.inference_batch_sizes),
            *(f"train_bs{b}" for b in config.train_batch_sizes),
        ]

    def repetitions(self, phase: str) -> int:
        return self.config.latency_repeats if phase == "latency_bs1" else self.config.repeats

    def run(self, phase: str) -> float | None:
        """Seconds per call of one timed repetition of ``phase``; ``None`` when the batch does not fit."""
        if phase in self._failed:
            return None
        kind = "train" if phase.startswith("train_") else "inference"
        if kind != self._kind:
            self._enter(kind)
        first = phase not in self._steps
        reset_peak(self.device)  # each batch size its own peak (on CPU the RSS high-water mark cannot reset)
        try:
            if first:
                self._steps[phase] = self._make_step(phase)
            step = self._steps[phase]
            record = first and bool(self.result["lambda_formulations"])
            iters = 1 if phase == "latency_bs1" else self.config.iters_per_repeat
            with self._context(kind):
                (seconds,) = time_repeated(
                    step,
                    device=self.device,
                    warmup=self.config.warmup if first else 0,
                    repeats=1,
                    iters_per_repeat=iters,
                    timed_window=partial(self.sampler.window, phase),
                )
            if record:  # after the phase's first calls: measured, when asked, in its warm-up
                self.result["lambda_formulations_by_phase"][phase] = lambda_formulations_run(self.model)
        except torch.OutOfMemoryError:
            self._failed.add(phase)
            self._steps.pop(phase, None)
            if kind == "train":
                self.optimizer.zero_grad(set_to_none=True)
            self.result[kind][phase.split("_", 1)[1]] = _out_of_memory(self.device)
            return None
        self._peaks[phase] = max(self._peaks.get(phase, 0.0), peak_bytes(self.device) / 2**20)
        self.result["samples_s"].setdefault(phase, []).append(seconds)
        return seconds

    def finish(self) -> dict:
        """The JSON-ready result; ``gpu_timeline`` holds the raw NVML samples (empty without a GPU)."""
        self._enter(None)
        self.sampler.stop()
        for phase, seconds in self.result["samples_s"].items():
            batch = phase.rsplit("_", 1)[1]
            if phase == "latency_bs1":
                latency_ms = [s * 1000 for s in seconds]
                stats = summarize(latency_ms)
                self.result["latency_ms"] = {
                    "p50": stats["median"],
                    "p95": percentile(latency_ms, 95),
                    **{key: stats[key] for key in ("p25", "p75", "min", "max", "n")},
                }
            elif phase not in self._failed:
                kind = phase.split("_", 1)[0]
                self.result[kind][batch] = {**throughput(seconds, int(batch[2:])), "peak_memory_mb": self._peaks[phase]}
        # A kind's peak is its highest batch size's; an out-of-memory attempt is never a peak (absent if none fit).
        for kind in ("inference", "train"):
            fitted = [mb for phase, mb in self._peaks.items() if _kind_of(phase) == kind and phase not in self._failed]
            if fitted:
                self.result["peak_memory_mb"][kind] = max(fitted)
        self.result["gpu_timeline"] = self.sampler.samples
        if self.sampler.unavailable:
            self.result["gpu"] = {"unavailable": self.sampler.unavailable}
        else:
            labels = dict.fromkeys(s["label"] for s in self.sampler.samples)
            self.result["gpu"] = {label: summarize_samples(self.sampler.samples, label) for label in labels}
        return self.result

    def _enter(self, kind: str | None) -> None:
        """Close the running kind, open ``kind`` (peaks are read per repetition, in :meth:`run`)."""
        if kind == "train" and self._kind != "train":
            self.model.train()
            # The trained recipe's optimizer; a small lr keeps random-label steps finite (cost does not depend on it).
            self.optimizer = create_optimizer(
                self.config.optimizer, self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4
            )
            self.scaler = grad_scaler(self.device, self.config.precision)
        elif kind == "inference":
            self.model.eval()
        if kind is not None:
            reset_peak(self.device)
        self._kind = kind

    def _context(self, kind: str):
        if kind == "train":  # autocast wraps the forward only (inside the step), not the backward
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.device, self.config.precision))
        return stack

    def _batch(self, size: int) -> torch.Tensor:
        x = torch.randn(size, 3, self.config.resolution, self.config.resolution, device=self.device)
        return x.contiguous(memory_format=self.memory_format)

    def _make_step(self, phase: str):
        size = int(phase.rsplit("_bs", 1)[1])
        x = self._batch(size)
        if not phase.startswith("train_"):
            return partial(self.model, x)
        y = torch.randint(0, self.config.num_classes, (size,), device=self.device)
        model, optimizer, scaler, device, precision = (
            self.model,
            self.optimizer,
            self.scaler,
            self.device,
            self.config.precision,
        )

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(model(x), y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

        return train_step


def _kind_of(phase: str) -> str:
    return "train" if phase.startswith("train_") else "inference"


def benchmark_model(name: str, config: BenchmarkConfig, model_kwargs: dict | None = None) -> dict:
    """Measure ``create_model(name, **model_kwargs)`` in this process, phase after phase.

    Each phase runs up to ``repeats`` repetitions, fewer once the timed total passes ``max_seconds``
    (never fewer than ``min_repeats``). Returns a JSON-ready dict; ``samples_s`` holds the seconds per
    call of every repetition, ``gpu_timeline`` the raw NVML samples (empty without a GPU).
    """
    bench = ModelBench(name, config, model_kwargs)
    for phase in bench.phases():
        iters = 1 if phase == "latency_bs1" else config.iters_per_repeat
        total = 0.0
        for done in range(1, bench.repetitions(phase) + 1):
            seconds = bench.run(phase)
            if seconds is None:
                break
            total += seconds * iters
            if _time_is_up(config, total, done, phase):
                break
    return bench.finish()


def _time_is_up(config: BenchmarkConfig, total_s: float, done: int, phase: str) -> bool:
    least = 1 if phase == "latency_bs1" else config.min_repeats
    return config.max_seconds is not None and total_s >= config.max_seconds and done >= least


def benchmark_models(models: dict[str, dict], config: BenchmarkConfig, *, isolate: bool = True) -> dict[str, dict]:
    """Measure each ``{name: create_model kwargs}``, interleaved, each in its own spawned process.

    Every model gets a persistent worker process (:mod:`~lambda_repro.profiling.interleaved`); the
    parent asks them in turn for one repetition of the same phase (the first model first on even
    repetitions, last on odd ones), so load that starts or stops part-way hits all models alike and
    the paired ratios (:func:`paired_ratios`) cancel it. ``threads: None`` (the idle cores) is
    resolved once here, so every model runs with the same thread count. ``isolate=False`` measures
    in this process, one model after the other (faster to start; peak RSS then mixes models).
    """
    config = replace(config, threads=resolve_threads(config.threads))
    if not isolate:
        return {name: benchmark_model(name, config, kwargs) for name, kwargs in models.items()}
    from lambda_repro.profiling.interleaved import measure_interleaved

    return measure_interleaved(models, config)


def paired_ratios(entry: dict, baseline: dict, max_ci_width: float) -> dict[str, dict]:
    """``entry / baseline`` for every timed phase both have, from their paired repetitions.

    Keys ``train_img_s_bs<N>``, ``inference_img_s_bs<N>`` (ratios of img/s: above 1 is faster),
    ``latency_ms`` (batch 1: above 1 is slower), and ``peak_memory_mb_<phase>`` (one reading each,
    no interval). Each is a :func:`~lambda_repro.profiling.paired_ratio.paired_ratio` dict.
    """
    ratios: dict[str, dict] = {}
    mine, theirs = entry.get("samples_s", {}), baseline.get("samples_s", {})
    for phase in mine:
        if phase not in theirs:
            continue
        kind, batch = phase.split("_", 1)
        if kind == "latency":
            ratios["latency_ms"] = paired_ratio(mine[phase], theirs[phase], max_ci_width=max_ci_width)
            continue
        if "median" not in entry.get(kind, {}).get(batch, {}) or "median" not in baseline.get(kind, {}).get(batch, {}):
            continue  # out of memory on one side
        # img/s ratio = inverse time ratio of the same batch
        ratios[f"{kind}_img_s_{batch}"] = paired_ratio(theirs[phase], mine[phase], max_ci_width=max_ci_width)
    for phase, mb in entry.get("peak_memory_mb", {}).items():
        other = baseline.get("peak_memory_mb", {}).get(phase)
        if mb and other:
            single = paired_ratio([mb], [other], max_ci_width=max_ci_width)
            ratios[f"peak_memory_mb_{phase}"] = {**single, "trusted": True}  # one exact reading, no spread
    return ratios


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
        "isolation": "one spawned, persistent process per model, all pinned to the same cores; repetitions interleaved",
        "inputs": "random tensors on the device (no data loading)",
    }


def _out_of_memory(device: torch.device) -> dict:
    """The record of a batch size that did not fit (CUDA OOM); frees the cache so the next size starts clean.

    No peak is recorded for it: the allocator's peak of a failed attempt is where it gave up,
    not what the size needs. Meant for GPUs and not run on one in this project yet (tested on
    CPU with an injected OOM and a fake allocator; on CPU the OS usually kills the process).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"error": "out of memory"}
