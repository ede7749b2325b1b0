"""A profile (the result of :func:`~lambda_repro.profiling.benchmark.benchmark_models`) as flat metrics and rows."""

from __future__ import annotations

TIMELINE_COLUMNS = ("model", "label", "t_s", "utilization_percent", "memory_used_mb")


def flat_profile_metrics(results: dict[str, dict], prefix: str = "profile") -> dict[str, float]:
    """``{"profile/<model>/<quantity>": value}`` for MLflow: medians, spreads, latency, memory, counts.

    Throughput keys read ``train_img_s_bs8`` (median), ``train_img_s_bs8_p25`` / ``_p75``.
    """
    flat: dict[str, float] = {}
    for model, entry in results.items():
        base = f"{prefix}/{model}"
        for key in ("params", "macs", "flops"):
            if entry.get(key) is not None:
                flat[f"{base}/{key}"] = float(entry[key])
        for phase, name in (("train", "train_img_s"), ("inference", "inference_img_s")):
            for batch, stats in entry.get(phase, {}).items():
                if "median" not in stats:  # e.g. {"error": "out of memory"}
                    continue
                flat[f"{base}/{name}_{batch}"] = float(stats["median"])
                flat[f"{base}/{name}_{batch}_p25"] = float(stats["p25"])
                flat[f"{base}/{name}_{batch}_p75"] = float(stats["p75"])
        for q in ("p50", "p95"):
            if q in entry.get("latency_ms", {}):
                flat[f"{base}/latency_ms_{q}"] = float(entry["latency_ms"][q])
        for phase, mb in entry.get("peak_memory_mb", {}).items():
            flat[f"{base}/peak_memory_mb_{phase}"] = float(mb)
        for label, summary in entry.get("gpu", {}).items():
            if isinstance(summary, dict):
                flat[f"{base}/gpu_utilization_mean_{label}"] = float(summary["utilization_mean_percent"])
                flat[f"{base}/gpu_memory_used_max_mb_{label}"] = float(summary["memory_used_max_mb"])
    return flat


def flat_ratio_metrics(ratios: dict[str, dict[str, dict]], prefix: str = "profile") -> dict[str, float]:
    """``{"profile/<model>/ratio_<quantity>": value}`` and its ``_ci_low`` / ``_ci_high`` / ``_trusted`` (1 or 0)."""
    flat: dict[str, float] = {}
    for model, mine in ratios.items():
        for key, r in mine.items():
            if r.get("ratio") is None:
                continue
            base = f"{prefix}/{model}/ratio_{key}"
            flat[base] = float(r["ratio"])
            flat[f"{base}_ci_low"] = float(r["ci_low"])
            flat[f"{base}_ci_high"] = float(r["ci_high"])
            flat[f"{base}_trusted"] = float(bool(r["trusted"]))
    return flat


def profile_summary(entry: dict) -> dict[str, float | None]:
    """The profiled model's few headline figures for ``metrics/profile.json`` (DVC metrics).

    Training throughput at the first training batch size, inference at the largest one, batch-1
    latency p50 and the training peak memory; the rest (counts, spreads, other batches, the
    baseline, settings) is in ``profile_info.json``. Four, so that ``dvc metrics show`` stays narrow.
    """

    def median(phase: str, which: int) -> float | None:
        batches = list(entry.get(phase, {}).values())
        stats = batches[which] if batches else {}
        return round(stats["median"], 3) if "median" in stats else None  # None: e.g. out of memory

    return {
        "train_img_s": median("train", 0),
        "infer_img_s": median("inference", -1),
        "latency_ms": round(entry["latency_ms"]["p50"], 2) if "p50" in entry.get("latency_ms", {}) else None,
        "peak_mb": round(entry["peak_memory_mb"]["train"]) if "train" in entry.get("peak_memory_mb", {}) else None,
    }


def profile_params(results: dict[str, dict], prefix: str = "profile") -> dict[str, float | str | None]:
    """``{"profile.<model>.<figure>": value}``: each model's counts and :func:`profile_summary`, as MLflow params.

    With them, ``profile.<model>.lambda_formulations.<phase>``: how many lambda layers ran each formulation in
    that phase, e.g. ``dense=8,spectral=8`` (measured per phase with ``model.lambda_implementation: measured``).

    Params, not metrics: one value per run is a summary, and MLflow draws every metric as a chart,
    which would push the learning curves down.
    """
    params: dict[str, float | str | None] = {}
    for model, entry in results.items():
        for phase, counts in (entry.get("lambda_formulations_by_phase") or {}).items():
            shown = ",".join(f"{name}={count}" for name, count in sorted(counts.items()))
            params[f"{prefix}.{model}.lambda_formulations.{phase}"] = shown
        counts = {
            "params_m": round(entry["params"] / 1e6, 3) if entry.get("params") is not None else None,
            "gmacs": round(entry["macs"] / 1e9, 3) if entry.get("macs") is not None else None,
        }
        for key, value in {**counts, **profile_summary(entry)}.items():
            if value is not None:
                params[f"{prefix}.{model}.{key}"] = value
    return params


def ratio_params(ratios: dict[str, dict[str, dict]], prefix: str = "profile") -> dict[str, float]:
    """:func:`flat_ratio_metrics` as MLflow params (``profile.<model>.ratio_<quantity>``): summaries, not charts."""
    return {key.replace("/", "."): value for key, value in flat_ratio_metrics(ratios, prefix).items()}


def timeline_rows(results: dict[str, dict]) -> list[dict]:
    """The GPU samples of every model on one time axis: each model's samples follow the previous model's."""
    rows: list[dict] = []
    offset = 0.0
    for model, entry in results.items():
        samples = entry.get("gpu_timeline", [])
        for sample in samples:
            rows.append({"model": model, **sample, "t_s": round(sample["t_s"] + offset, 3)})
        if samples:
            offset = rows[-1]["t_s"] + 1.0
    return rows
