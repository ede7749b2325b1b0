"""The GPU-oriented switches of a run (precision, channels_last, pin_memory), resolved for the device at hand.

Shared by training and the evaluate stage's workers, so that a model is scored as it was
trained. Each is tested forced on on CPU; none has run on a GPU in this project.
"""

from __future__ import annotations

import warnings

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device, cpu_autocast: bool = False) -> torch.dtype | None:
    """Autocast dtype on CUDA (not run on a GPU here); on CPU, where bf16/fp16 autocast is slow, fp32
    unless ``cpu_autocast`` (``train.cpu_autocast``) asks for the GPU's path to run on CPU."""
    if device.type != "cuda" and not cpu_autocast:
        if precision != "fp32":
            warnings.warn(
                f"train.precision={precision} applies on GPU only (train.cpu_autocast: true forces it); "
                "training in fp32 on CPU",
                stacklevel=2,
            )
        return None
    return PRECISIONS[precision]


def resolve_pin_memory(setting: str | bool, device: torch.device) -> bool:
    """``auto``: page-locked batches when copying to CUDA; forced on CPU it runs (torch warns, no pinning)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


CHANNELS_LAST_DEVICES = ("cuda", "cpu")
"""Where ``auto`` turns channels_last on. CUDA: tensor cores prefer NHWC (not run here: no GPU). CPU: oneDNN's NHWC
kernels, and BatchNorm / ReLU / pooling on that layout, were faster for both models on the 2-core AMD EPYC host
(2026-12-04, sgemm ~210 / 3x3 conv ~380 GFLOP/s; ``scripts/bench_lambda.py --only layouts``, all four interleaved):
batch 8 at 224, training resnet50 766 -> 624 ms per step and lambda_resnet50 1058 -> 899, inference 220 -> 177 and
301 -> 274; the default run's shape (``--batch 16 --resolution 64``, ``OMP_NUM_THREADS=1``) training 295 -> 272 and
357 -> 328. Not measured on an Intel host; ``false`` turns it off."""


def resolve_channels_last(setting: str | bool, device: torch.device) -> bool:
    """``auto``: channels_last on CUDA and CPU (``CHANNELS_LAST_DEVICES``), off elsewhere."""
    return device.type in CHANNELS_LAST_DEVICES if setting == "auto" else bool(setting)
