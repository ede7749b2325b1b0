"""MLflow's own system metrics monitor (CPU, memory, disk, network; GPUs through NVML), bound to one run.

Started with an explicit run id and tracking URI, so no active run (MLflow's global
state) is needed. Without an NVIDIA driver NVML raises ``pynvml.NVMLError_LibraryNotFound``:
MLflow's monitor catches it and skips GPU metrics; we probe NVML first so that the run
says, in its ``system_metrics.gpu`` tag, why there are none.
"""

from __future__ import annotations

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor


def nvml_status() -> str:
    """``"available (N GPUs)"``, or why NVML cannot report GPUs on this machine."""
    try:
        import pynvml
    except ImportError:
        return "unavailable: nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return f"unavailable: NVML says {err}"
    try:
        return f"available ({pynvml.nvmlDeviceGetCount()} GPUs)"
    finally:
        pynvml.nvmlShutdown()


def start_system_metrics(run_id: str, tracking_uri: str, interval_s: float) -> SystemMetricsMonitor:
    """Start sampling every ``interval_s`` seconds into ``run_id`` (continuing its steps when resumed)."""
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=tracking_uri)
    monitor.start()
    return monitor
