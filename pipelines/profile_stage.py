"""DVC stage `profile`: counts, throughput, latency and memory of the model and its ResNet-50 baseline.

Not named `profile.py`: every `python pipelines/<stage>.py` has pipelines/ on sys.path, where
such a file would shadow the standard library's `profile` module (cProfile, imported by torch,
imports it) and break every stage.

Reads the `model` and `profile` sections of params.yaml. Each model is measured in its own
spawned process (see `lambda_repro.profiling.benchmark`). Writes `metrics/profile.json`
(per model; `settings` says how it was measured) and `metrics/profile_gpu_timeline.csv`
(NVML samples; only a header without a GPU), and logs the flat metrics into the pipeline's
MLflow run when `metrics/mlflow_run.json` names one.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

if not __package__:  # run as `python pipelines/profile_stage.py`: make `pipelines` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_repro.profiling import (
    TIMELINE_COLUMNS,
    BenchmarkConfig,
    benchmark_models,
    flat_profile_metrics,
    settings,
    timeline_rows,
)
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads
from lambda_repro.reporting.mlflow_run import log_to_run, read_run_ref
from pipelines._params import ParamError, fail, load_checked, model_kwargs

PROFILE_PATH = Path("metrics/profile.json")
TIMELINE_PATH = Path("metrics/profile_gpu_timeline.csv")
RUN_POINTER = Path("metrics/mlflow_run.json")


def main() -> int:
    try:
        params = load_checked("params.yaml", "profile")
        section = dict(params["profile"])
        baseline = section.pop("baseline")
        config = BenchmarkConfig.from_params(section)
    except (ParamError, ValueError, KeyError) as err:
        return fail("profile", str(err))
    model = params["model"]
    models = {model["name"]: model_kwargs(model)}
    models.setdefault(baseline, model_kwargs({"name": baseline}))

    load_before = load_average()
    config = replace(config, threads=resolve_threads(config.threads))
    start = time.perf_counter()
    results = benchmark_models(models, config)
    wall_s = time.perf_counter() - start

    timeline = timeline_rows(results)
    for entry in results.values():
        entry.pop("gpu_timeline", None)
    profile = {"settings": {**settings(config, load_before), "baseline": baseline, "wall_s": wall_s}, **results}
    PROFILE_PATH.parent.mkdir(parents=True, exist_ok=True)
    PROFILE_PATH.write_text(json.dumps(profile, indent=2) + "\n")
    with TIMELINE_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TIMELINE_COLUMNS)
        writer.writeheader()
        writer.writerows(timeline)

    def shown(stats: dict) -> str:
        return f"{stats['median']:.2f}" if "median" in stats else stats.get("error", "?")

    for name, entry in results.items():
        train = ", ".join(f"{k} {shown(v)}" for k, v in entry["train"].items())
        infer = ", ".join(f"{k} {shown(v)}" for k, v in entry["inference"].items())
        print(
            f"profile: {name}: {entry['params']:,} params, {entry['macs'] / 1e9:.3f} GMACs at 224; "
            f"train img/s {train}; inference img/s {infer}; latency p50 {entry['latency_ms']['p50']:.1f} ms; "
            f"peak {entry['memory_kind']} {entry['peak_memory_mb']['train']:,.0f} MB"
        )
    print(
        f"profile: wrote {PROFILE_PATH} and {TIMELINE_PATH} in {wall_s:.0f} s "
        f"({config.threads} CPU threads; load average before {load_before})"
    )

    run = read_run_ref(RUN_POINTER)
    if run is None:
        print(f"profile: {RUN_POINTER} names no MLflow run; metrics only in {PROFILE_PATH}")
        return 0
    problem = log_to_run(run, flat_profile_metrics(results))
    print(f"profile: MLflow: {problem}" if problem else f"profile: logged to MLflow run {run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
