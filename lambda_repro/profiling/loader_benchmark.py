"""Is the input pipeline the bottleneck? The training loader's decode + augmentation speed per worker.

The embedded dataset's 48-96 px JPEGs decode far faster than ImageNet's (~500x375 on average), so
:func:`write_sample_jpegs` writes ImageNet-sized ones (smooth colour fields with texture and noise,
JPEG quality 90, so that they compress like photographs rather than like flat colour or pure noise).
:func:`loader_images_per_s` then times, in this process (one loader worker), what a training worker
does per image: open + decode to RGB + the training transform at the training resolution.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lambda_repro.data import open_rgb, train_transform

IMAGENET_MEAN_SIZE = (500, 375)  # width x height of a typical ImageNet training JPEG


def write_sample_jpegs(
    folder: str | os.PathLike, count: int, size: tuple[int, int] = IMAGENET_MEAN_SIZE, seed: int = 0
):
    """``count`` JPEGs of ``size`` (width, height) in ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
        base = rng.uniform(40, 215, 3)
        wave = np.sin(xx * fx + yy * fy + phase)[..., None] * rng.uniform(20, 60, 3)
        noise = rng.normal(0, 12, (height, width, 3))
        pixels = np.clip(base + wave + noise, 0, 255).astype(np.uint8)
        path = folder / f"sample_{i:05d}.JPEG"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def loader_images_per_s(paths: list[Path], resolution: int, repeats: int = 3) -> dict:
    """Images per second of one worker (decode + training transform), median over ``repeats`` passes."""
    transform = train_transform(resolution)
    transform(open_rgb(paths[0]))  # warm-up: imports, first allocation
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            transform(open_rgb(path))
        rates.append(len(paths) / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "n": len(rates)}


def workers_needed(model_images_per_s: float, images_per_s_per_worker: float) -> int:
    """Loader workers (each as fast as one measured worker) that keep up with the model's training throughput."""
    return max(1, math.ceil(model_images_per_s / images_per_s_per_worker))
