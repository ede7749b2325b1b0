"""The evidence the report's claims table needs beyond the model profile: layers, scaling, input pipeline.

:func:`measure_evidence` runs, in this process and after the models' own profile:

* ``layers``: the lambda layer beside global / local 7x7 self-attention and the 3x3 convolution at
  every lambda-layer shape (:mod:`~lambda_repro.profiling.layer_comparison`);
* ``scaling``: one layer over map sides and the whole model over input sides, with the fitted
  exponents (:mod:`~lambda_repro.profiling.scaling`);
* ``loader``: decode + augmentation speed of one loader worker on generated ImageNet-sized JPEGs
  (:mod:`~lambda_repro.profiling.loader_benchmark`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, fields

import torch

from lambda_repro.profiling.layer_comparison import compare_layers
from lambda_repro.profiling.loader_benchmark import loader_images_per_s, write_sample_jpegs
from lambda_repro.profiling.scaling import exponents, layer_sweep, model_sweep


@dataclass(frozen=True)
class EvidenceConfig:
    """The evidence keys of the ``profile`` section; a zero count or an empty list skips that part."""

    layer_batch: int = 4  # at batch 1 fixed per-call costs decide; the paper's claims are about training batches
    layer_repeats: int = 2
    scaling_sides: tuple[int, ...] = (24, 32, 40, 48)
    scaling_resolutions: tuple[int, ...] = (64, 96, 128, 160)
    scaling_repeats: int = 3
    loader_images: int = 100

    def __post_init__(self) -> None:
        for name in ("layer_batch",):
            if getattr(self, name) < 1:
                raise ValueError(f"profile.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("layer_repeats", "scaling_repeats", "loader_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"profile.{name}: must be >= 0, got {getattr(self, name)}")
        # a model's last map must keep 2x2 positions at batch 1, or batch norm has one value per channel
        for name, least in (("scaling_sides", 8), ("scaling_resolutions", 64)):
            if any(not isinstance(s, int) or s < least for s in getattr(self, name)):
                raise ValueError(
                    f"profile.{name}: must be a list of integers >= {least}, got {list(getattr(self, name))}"
                )

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_params(cls, section: dict) -> EvidenceConfig:
        """The evidence keys of ``section`` (other keys are ignored: they belong to BenchmarkConfig)."""
        values = {k: v for k, v in section.items() if k in cls.keys()}
        for name in ("scaling_sides", "scaling_resolutions"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def measure_evidence(
    config: EvidenceConfig, models: dict[str, dict], device: torch.device, resolution: int, threads: int
) -> dict:
    """The ``evidence`` part of the profile (see the module docstring); each part records its own wall time."""
    torch.set_num_threads(threads)
    evidence: dict = {}
    if config.layer_repeats:
        start = time.perf_counter()
        evidence["layers"] = {
            "batch": config.layer_batch,
            "repeats": config.layer_repeats,
            "rows": compare_layers(config.layer_batch, config.layer_repeats, device),
            "wall_s": time.perf_counter() - start,
        }
    if config.scaling_repeats and (config.scaling_sides or config.scaling_resolutions):
        start = time.perf_counter()
        layer_rows = layer_sweep(list(config.scaling_sides), device, config.scaling_repeats)
        model_rows = model_sweep(models, list(config.scaling_resolutions), device, config.scaling_repeats)
        evidence["scaling"] = {
            "layer": {"channels": 64, "batch": 1, "rows": layer_rows, "exponents": exponents(layer_rows)},
            "model": {"batch": 1, "rows": model_rows, "exponents": exponents(model_rows)},
            "repeats": config.scaling_repeats,
            "wall_s": time.perf_counter() - start,
        }
    if config.loader_images:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="lambda-repro-jpegs-") as folder:
            paths = write_sample_jpegs(folder, config.loader_images)
            rate = loader_images_per_s(paths, resolution, repeats=2)
        evidence["loader"] = {
            "images": config.loader_images,
            "image_size": [500, 375],
            "resolution": resolution,
            "transform": "open + decode to RGB + RandomResizedCrop + flip + ToTensor + normalise (train_transform)",
            "images_per_s_per_worker": rate,
            "wall_s": time.perf_counter() - start,
        }
    return evidence
