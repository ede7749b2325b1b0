"""Counting and measuring: parameters, MACs, throughput, latency, memory and GPU load."""

from lambda_repro.profiling.benchmark import (
    BenchmarkConfig,
    benchmark_model,
    benchmark_models,
    paired_ratios,
    settings,
)
from lambda_repro.profiling.counting import count_macs, count_params, reference_formulation
from lambda_repro.profiling.profile_metrics import (
    TIMELINE_COLUMNS,
    flat_profile_metrics,
    flat_ratio_metrics,
    profile_params,
    profile_summary,
    ratio_params,
    timeline_rows,
)

__all__ = [
    "TIMELINE_COLUMNS",
    "BenchmarkConfig",
    "benchmark_model",
    "benchmark_models",
    "count_macs",
    "count_params",
    "flat_profile_metrics",
    "flat_ratio_metrics",
    "paired_ratios",
    "profile_params",
    "profile_summary",
    "ratio_params",
    "reference_formulation",
    "settings",
    "timeline_rows",
]
