"""DVC stage `profile`: counts, throughput, latency and memory of the model and its ResNet-50 baseline.

Not named `profile.py`: every `python3 pipelines/<stage>.py` has pipelines/ on sys.path, where
such a file would shadow the standard library's `profile` module (cProfile, imported by torch,
imports it) and break every stage.

Reads the `model` and `profile` sections of params.yaml (and `train.optimizer`, the training
step's optimizer). Each model is measured in its own spawned process, their repetitions
interleaved (see `lambda_repro.profiling.interleaved`); then, in this process, the claims'
evidence (layers, scaling, loader: `lambda_repro.profiling.evidence`). Writes `profile.json` (the
model's headline numbers: DVC metrics) and `profile_info.json` (per model; `ratios`: model /
baseline with 95% intervals; `evidence`; `settings` says how it
was measured) and `profile_gpu_timeline.csv` (NVML samples; only a header without a GPU) into
`--metrics-dir`, and logs the headline figures and ratios (params `profile.<model>.<figure>`) and the files into
the pipeline's MLflow run when its `mlflow_run.json` names one.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.metrics_files import info_path, write_metrics
from lambda_repro.process_setup import configure_process
from lambda_repro.profiling import (
    TIMELINE_COLUMNS,
    BenchmarkConfig,
    benchmark_models,
    profile_params,
    profile_summary,
    ratio_params,
    settings,
    timeline_rows,
)
from lambda_repro.profiling.benchmark import paired_ratios
from lambda_repro.profiling.cpu_threads import load_average, resolve_threads
from lambda_repro.profiling.evidence import EvidenceConfig, measure_evidence
from lambda_repro.tracking.pipeline_run import RUN_POINTER_NAME, log_to_run, read_run_pointer
from lambda_repro.training.formulations import MEASURED
from lambda_repro.training.recipe import model_options
from pipelines._stage import ParamError, stage

PROFILE_NAME = "profile.json"
TIMELINE_NAME = "profile_gpu_timeline.csv"


def run(params: dict, args) -> int:
    section = dict(params["profile"])
    baseline = section.pop("baseline")
    try:
        evidence_config = EvidenceConfig.from_params(section)
        timing = {k: v for k, v in section.items() if k not in EvidenceConfig.keys()}
        config = BenchmarkConfig.from_params(
            timing,
            optimizer=params["train"]["optimizer"],
            measure_formulations=params["model"]["lambda_implementation"] == MEASURED,
        )
    except ValueError as err:  # what only this machine can tell (e.g. more threads than cores)
        raise ParamError(str(err)) from None
    model = params["model"]
    models = {model["name"]: model_options(model)}
    models.setdefault(baseline, model_options({**model, "name": baseline}))
    metrics_dir = Path(args.metrics_dir)
    profile_path, timeline_path = metrics_dir / PROFILE_NAME, metrics_dir / TIMELINE_NAME

    load_before = load_average()
    config = replace(config, threads=resolve_threads(config.threads))
    # The evidence runs in this process, the models in spawned ones that set the same mode.
    process = configure_process(config.resolve_device())
    start = time.perf_counter()
    results = benchmark_models(models, config)
    models_wall_s = time.perf_counter() - start
    ratios = {
        name: paired_ratios(results[name], results[baseline], config.max_ratio_ci_width)
        for name in results
        if name != baseline
    }
    evidence = measure_evidence(evidence_config, models, config.resolve_device(), config.resolution, config.threads)
    wall_s = time.perf_counter() - start

    timeline = timeline_rows(results)
    for entry in results.values():
        entry.pop("gpu_timeline", None)
    profile_settings = {
        **settings(config, load_before),
        "baseline": baseline,
        "wall_s": wall_s,
        **process,  # math_mode and heap
    }
    profile_settings.update(models_wall_s=models_wall_s, evidence=asdict(evidence_config))
    profile = {"settings": profile_settings, **results, "ratios": ratios, "evidence": evidence}
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
            f"peak {entry['memory_kind']} {entry['peak_memory_mb'].get('train', math.nan):,.0f} MB"
        )
    for name, mine in ratios.items():
        for key, r in mine.items():
            if r["ratio"] is not None and not key.startswith("peak_memory"):
                flag = "" if r["trusted"] else "  (interval too wide to trust)"
                print(
                    f"profile: {name} / {baseline} {key}: {r['ratio']:.2f}x "
                    f"(95% {r['ci_low']:.2f}-{r['ci_high']:.2f}, {r['n']} pairs){flag}"
                )
    for part, data in evidence.items():
        print(f"profile: evidence {part} in {data['wall_s']:.0f} s")
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
    # Ratios to 3 decimals: a param is shown as written, and 0.6208937979212139 says no more than 0.621.
    ratios_rounded = {key: round(value, 3) for key, value in ratio_params(ratios).items()}
    params = {**profile_params(results), **ratios_rounded}
    problem = log_to_run(ref, params=params, artifacts=artifacts, buffer_dir=metrics_dir / "mlflow_buffer")
    print(f"profile: MLflow: {problem}" if problem else f"profile: logged to MLflow run {ref.run_id}")
    return 0


main = stage("profile", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
