"""The reproduction report: published vs measured, training curves, speed and memory, environment."""

from lambda_repro.reporting.build import ReportConfig, ReportResult, build_report
from lambda_repro.reporting.comparison import (
    ABOVE,
    BELOW,
    NOT_COMPARABLE,
    REPRODUCED,
    Tolerance,
    compare_accuracy,
    compare_counts,
)

__all__ = [
    "ABOVE",
    "BELOW",
    "NOT_COMPARABLE",
    "REPRODUCED",
    "ReportConfig",
    "ReportResult",
    "Tolerance",
    "build_report",
    "compare_accuracy",
    "compare_counts",
]
