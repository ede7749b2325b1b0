"""``lambda-repro benchmark MODEL``: training / inference throughput, latency and memory against ResNet-50.

The profile stage's measurement (``lambda_repro.profiling.benchmark_models``: warm-up,
synchronised repetitions, medians, each model in a fresh process) run for the model and its
baseline in interleaved rounds (A B, B A, A B, ...), so that load from other work hits both
alike; each figure is the median of the rounds' medians. Inputs are random tensors on the
device (no data loading), as in the profile stage.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from lambda_repro.commands.devices import resolve_device
from lambda_repro.commands.errors import CommandError
from lambda_repro.models import list_models, options_for
from lambda_repro.models.lambda_layer import IMPLEMENTATIONS
from lambda_repro.process_setup import configure_process
from lambda_repro.profiling import BenchmarkConfig, benchmark_models, settings
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads


def interleaved_schedule(names: list[str], rounds: int) -> list[str]:
    """``[a, b, b, a, a, b, ...]``: every other round reversed, so neither model always runs first."""
    schedule = []
    for index in range(rounds):
        schedule.extend(names if index % 2 == 0 else reversed(names))
    return schedule


def _median_of(entries: list[dict]) -> dict:
    """One figure from the rounds' summaries: the median of their medians, and their range."""
    medians = [entry["median"] for entry in entries if "median" in entry]
    if not medians:
        return {"error": entries[0].get("error", "not measured")}
    return {"median": statistics.median(medians), "min": min(medians), "max": max(medians), "rounds": len(medians)}


def combine_rounds(measured: list[dict]) -> dict:
    """Fold the per-round results of one model (``benchmark_model``'s dicts) into one summary."""
    first = measured[0]
    return {
        **{key: first[key] for key in ("model", "params", "macs", "flops", "macs_resolution", "memory_kind")},
        "lambda_formulations": first.get("lambda_formulations", {}),
        "train": {size: _median_of([m["train"][size] for m in measured]) for size in first["train"]},
        "inference": {size: _median_of([m["inference"][size] for m in measured]) for size in first["inference"]},
        "latency_ms_p50": statistics.median(m["latency_ms"]["p50"] for m in measured),
        "peak_memory_mb": {
            phase: statistics.median(m["peak_memory_mb"][phase] for m in measured) for phase in first["peak_memory_mb"]
        },
    }


def run_interleaved(models: dict[str, dict], config: BenchmarkConfig, rounds: int, *, isolate: bool = True) -> dict:
    """``{name: combined summary}`` of ``rounds`` interleaved measurements of every model."""
    measured: dict[str, list[dict]] = {name: [] for name in models}
    for name in tqdm(interleaved_schedule(list(models), rounds), desc="benchmark", unit="model run"):
        result = benchmark_models({name: models[name]}, config, isolate=isolate)[name]
        result.pop("gpu_timeline", None)
        measured[name].append(result)
    return {name: combine_rounds(results) for name, results in measured.items()}


def _cell(entry: dict, baseline: dict | None) -> str:
    if "median" not in entry:
        return entry.get("error", "?")
    text = f"{entry['median']:.2f}"
    if baseline is not None and "median" in baseline and baseline["median"] > 0:
        text += f" ({entry['median'] / baseline['median']:.2f}x)"
    return text


def format_table(results: dict, baseline: str) -> str:
    base = results[baseline]
    columns = [("train", size) for size in base["train"]] + [("inference", size) for size in base["inference"]]
    header = ["model", "params", "GMACs"] + [f"{phase} img/s {size}" for phase, size in columns]
    header += ["latency p50 ms", f"peak train MB ({base['memory_kind']})"]
    rows = []
    for name, entry in results.items():
        ref = None if name == baseline else base
        row = [name, f"{entry['params']:,}", f"{entry['macs'] / 1e9:.3f}"]
        row += [_cell(entry[phase][size], ref[phase][size] if ref else None) for phase, size in columns]
        row += [f"{entry['latency_ms_p50']:.1f}", f"{entry['peak_memory_mb']['train']:,.0f}"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "benchmark",
        help="training / inference throughput and memory of a model vs resnet50 (interleaved)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=list_models(), metavar="MODEL", help=f"one of {', '.join(list_models())}")
    parser.add_argument("--baseline", default="resnet50", choices=list_models(), help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=224, help="input side in pixels (default: %(default)s)")
    parser.add_argument("--train-batch-sizes", type=int, nargs="+", default=[8], help="default: 8")
    parser.add_argument("--inference-batch-sizes", type=int, nargs="+", default=[1, 8], help="default: 1 8")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per figure (default: %(default)s)")
    parser.add_argument("--min-repeats", type=int, default=2, help="repetitions even past --max-seconds")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="timed seconds per figure (default: 10)")
    parser.add_argument("--latency-repeats", type=int, default=10, help="batch-1 latency calls (default: 10)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype")
    parser.add_argument(
        "--channels-last", default="auto", choices=("auto", "on", "off"), help="auto: on for CUDA and CPU"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when there is one)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the idle cores)")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"), help="the training step's optimizer")
    parser.add_argument("--lambda-implementation", default=None, choices=IMPLEMENTATIONS, help="default: auto")
    parser.add_argument("--macs-resolution", type=int, default=224, help="input side MACs are counted at")
    parser.add_argument("--in-process", action="store_true", help="no fresh process per run (peak memory then mixes)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results and settings there")
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The profile stage's config, checked against the ``profile`` params schema as params.yaml is."""
    section = {
        "resolution": args.resolution,
        "device": args.device,
        "precision": args.precision,
        "channels_last": {"auto": "auto", "on": True, "off": False}[args.channels_last],
        "train_batch_sizes": args.train_batch_sizes,
        "inference_batch_sizes": args.inference_batch_sizes,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "min_repeats": args.min_repeats,
        "latency_repeats": args.latency_repeats,
        "max_seconds": args.max_seconds,
        "threads": args.threads,
    }
    try:
        config = BenchmarkConfig.from_params(section, optimizer=args.optimizer, macs_resolution=args.macs_resolution)
    except ValueError as err:  # name the option, not the params key ("profile.repeats: ..." -> "--repeats: ...")
        message = str(err).replace(" (profile section)", "")
        if message.startswith("profile."):
            key, rest = message.removeprefix("profile.").split(":", 1)
            message = f"--{key.replace('_', '-')}:{rest}"
        raise CommandError(message) from None
    return replace(config, threads=resolve_threads(config.threads))


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise CommandError(f"--rounds must be at least 1, got {args.rounds}")
    config = config_from_args(args)
    resolve_device(args.device)  # no CUDA: one line here, not a traceback from the measuring process
    configure_process(config.resolve_device())  # this command's process (--in-process measures here)
    options = {"lambda_implementation": args.lambda_implementation} if args.lambda_implementation else {}
    models = {name: options_for(name, **options) for name in dict.fromkeys([args.model, args.baseline])}
    load_before = load_average()
    results = run_interleaved(models, config, args.rounds, isolate=not args.in_process)
    print(format_table(results, args.baseline))
    print(
        f"{args.rounds} interleaved rounds; {config.resolution} px, {config.precision}, {config.resolve_device()} "
        f"({config.threads} threads); load average before {_load(load_before)}, after {_load(load_average())}; "
        "ratios are to the baseline"
    )
    if args.json:
        report = {"settings": {**settings(config, load_before), "rounds": args.rounds}, "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
