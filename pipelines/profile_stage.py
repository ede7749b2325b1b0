"""DVC stage `profile`: counts, throughput, latency and memory of the model and its ResNet-50 baseline.

Not named `profile.py`: every `python3 pipelines/<stage>.py` has pipelines/ on sys.path, where
such a file would shadow the standard library's `profile` module (cProfile, imported by torch,
imports it) and break every stage.

Reads the `model` and `profile` sections of params.yaml (and `train.optimizer`, the training
step's optimizer). Each model is measured in its own spawned process (see
`lambda_repro.profiling.benchmark`). Writes `profile.json` (the model's headline numbers: DVC
metrics), `profile_info.json` (every figure per model; `settings` says how it was measured) and
`profile_gpu_timeline.csv` (NVML samples; only a header without a GPU) into `--metrics-dir`,
and logs each model's headline figures (params `profile.<model>.<figure>`) and the files into the
pipeline's MLflow run when its `mlflow_run.json` names one.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.metrics_files import info_path, write_metrics
from lambda_repro.profiling import (
    TIMELINE_COLUMNS,
    BenchmarkConfig,
    benchmark_models,
    profile_params,
    profile_summary,
    settings,
    timeline_rows,
)
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, log_to_run, read_run_pointer
from lambda_repro.training.recipe import model_options
from pipelines._stage import ParamError, stage

PROFILE_NAME = "profile.json"
TIMELINE_NAME = "profile_gpu_timeline.csv"


def run(params: dict, args) -> int:
    section = dict(params["profile"])
    baseline = section.pop("baseline")
    try:
        config = BenchmarkConfig.from_params(section, optimizer=params["train"]["optimizer"])
    except ValueError as err:  # what only this machine can tell (e.g. more threads than cores)
        raise ParamError(str(err)) from None
    model = params["model"]
    models = {model["name"]: model_options(model)}
    models.setdefault(baseline, model_options({**model, "name": baseline}))
    metrics_dir = Path(args.metrics_dir)
    profile_path, timeline_path = metrics_dir / PROFILE_NAME, metrics_dir / TIMELINE_NAME

    load_before = load_average()
    config = replace(config, threads=resolve_threads(config.threads))
    start = time.perf_counter()
    results = benchmark_models(models, config)
    wall_s = time.perf_counter() - start

    timeline = timeline_rows(results)
    for entry in results.values():
        entry.pop("gpu_timeline", None)
    profile = {"settings": {**settings(config, load_before), "baseline": baseline, "wall_s": wall_s}, **results}
    # The model's headline numbers are the DVC metrics; every figure and setting is in the info file.
    write_metrics(profile_path, profile_summary(results[model["name"]]), info=profile)
    with timeline_path.open("w", newline="") as f:
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
        f"profile: wrote {profile_path}, {info_path(profile_path)} and {timeline_path} in {wall_s:.0f} s "
        f"({config.threads} CPU threads; load average before {load_before})"
    )

    pointer = metrics_dir / RUN_POINTER_NAME
    ref = read_run_pointer(pointer)
    if ref is None:
        print(f"profile: {pointer} names no MLflow run; metrics only in {profile_path}")
        return 0
    artifacts = [(path, "metrics") for path in (profile_path, info_path(profile_path), timeline_path)]
    problem = log_to_run(
        ref, params=profile_params(results), artifacts=artifacts, buffer_dir=metrics_dir / "mlflow_buffer"
    )
    print(f"profile: MLflow: {problem}" if problem else f"profile: logged to MLflow run {ref.run_id}")
    return 0


main = stage("profile", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
