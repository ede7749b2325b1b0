"""A background thread that samples a GPU's utilization and memory through NVML while work is timed.

Samples are taken only inside :meth:`GpuSampler.window` (the timed repetitions), each
tagged with the window's label, so a timeline shows which measurement produced which
load. On a machine without a CUDA device or without an NVIDIA driver the sampler does
nothing and :attr:`GpuSampler.unavailable` says why; nothing is raised.

The NVML path has not been run on a GPU in this project yet (there was none); it is
written against ``nvidia-ml-py`` (``pynvml``) and exercised here only up to the point
where NVML reports that no driver is present.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import torch


class GpuSampler:
    """Sample ``nvmlDeviceGetUtilizationRates`` and ``nvmlDeviceGetMemoryInfo`` every ``interval_s``."""

    def __init__(self, device: torch.device, interval_s: float = 0.1) -> None:
        self.device = device
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.unavailable: str | None = None
        self._handle = None
        self._nvml = None
        self._label: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def start(self) -> GpuSampler:
        if self.device.type != "cuda":
            self.unavailable = f"no GPU: measured on {self.device.type}"
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            # NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES renumbers them for torch. Match by PCI bus id.
            bus_id = _pci_bus_id(index)
            if bus_id:
                self._handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception as err:  # NVMLError (no driver, no permission) or a missing module: sample nothing
            self.unavailable = f"NVML unavailable: {type(err).__name__}: {err}"
            return self
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextlib.contextmanager
    def window(self, label: str) -> Iterator[None]:
        """Samples taken while inside are tagged ``label``; outside, nothing is recorded."""
        self._label = label
        try:
            yield
        finally:
            self._label = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            label = self._label
            if label is None:
                continue
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            except Exception as err:  # a lost device mid-run: keep what we have
                self.unavailable = f"NVML sampling stopped: {err}"
                return
            self.samples.append(
                {
                    "t_s": round(time.perf_counter() - self._t0, 3),
                    "label": label,
                    "utilization_percent": float(util.gpu),
                    "memory_used_mb": mem.used / 2**20,
                }
            )


def summarize_samples(samples: list[dict], label: str) -> dict[str, float | int] | None:
    """Mean / max utilization and max memory of the samples tagged ``label``; ``None`` without any."""
    mine = [s for s in samples if s["label"] == label]
    if not mine:
        return None
    utils = [s["utilization_percent"] for s in mine]
    return {
        "utilization_mean_percent": sum(utils) / len(utils),
        "utilization_max_percent": max(utils),
        "memory_used_max_mb": max(s["memory_used_mb"] for s in mine),
        "samples": len(mine),
    }


def _pci_bus_id(index: int) -> str | None:
    props = torch.cuda.get_device_properties(index)
    domain, bus, device = (getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
    if None in (domain, bus, device):
        return None
    return f"{domain:08x}:{bus:02x}:{device:02x}.0"
