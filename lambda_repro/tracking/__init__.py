"""Experiment tracking: MLflow runs that survive an unreachable server, and their local buffer."""

from lambda_repro.tracking.git_info import git_tags
from lambda_repro.tracking.params import flatten_params
from lambda_repro.tracking.replay import ReplaySummary, replay_buffer
from lambda_repro.tracking.run_tracker import RunTracker, TrackingRejectedWarning, TrackingUnavailableWarning
from lambda_repro.tracking.uri import resolve_tracking_uri

__all__ = [
    "ReplaySummary",
    "RunTracker",
    "TrackingRejectedWarning",
    "TrackingUnavailableWarning",
    "flatten_params",
    "git_tags",
    "replay_buffer",
    "resolve_tracking_uri",
]
