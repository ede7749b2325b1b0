"""What a reproduction will cost: the measured training throughput projected to the published recipe.

A projection, not a measurement: it assumes every step runs at the measured median speed (no data
loading stalls, no evaluation, no restarts), so a real run takes at least this long.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_TRAIN_IMAGES = 1_281_167
PUBLISHED_EPOCHS = 130
# The seed's author, as recorded in DESIGN.md: ~1 h per ImageNet epoch on 8 V100 (~356 img/s in all).
REFERENCE_NAME = "seed's author: 8 x V100 (as stated in DESIGN.md)"
REFERENCE_EPOCH_HOURS = 1.0
REFERENCE_DEVICES = 8


@dataclass(frozen=True)
class Projection:
    setup: str
    images_per_s: float
    devices: int
    epoch_hours: float
    total_hours: float
    total_device_hours: float
    basis: str

    @property
    def total_days(self) -> float:
        return self.total_hours / 24


def project(
    images_per_s_per_device: float,
    devices: int = 1,
    *,
    setup: str,
    basis: str,
    images: int = IMAGENET_TRAIN_IMAGES,
    epochs: int = PUBLISHED_EPOCHS,
) -> Projection:
    """Hours per epoch and for ``epochs`` epochs on ``devices`` devices each at ``images_per_s_per_device``."""
    if images_per_s_per_device <= 0 or devices < 1:
        raise ValueError("throughput must be > 0 and devices >= 1")
    total_rate = images_per_s_per_device * devices
    epoch_hours = images / total_rate / 3600
    return Projection(
        setup, total_rate, devices, epoch_hours, epoch_hours * epochs, epoch_hours * epochs * devices, basis
    )


def reference_projection(epochs: int = PUBLISHED_EPOCHS) -> Projection:
    rate = IMAGENET_TRAIN_IMAGES / (REFERENCE_EPOCH_HOURS * 3600) / REFERENCE_DEVICES
    return project(rate, REFERENCE_DEVICES, setup=REFERENCE_NAME, basis="reported, ~1 h per epoch", epochs=epochs)
