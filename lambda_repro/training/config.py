"""Everything one training run needs to know, in one serialisable record."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The code that decides the trained weights: a change in it makes an old checkpoint stale.
_RECIPE_PACKAGES = ("models", "data", "training")

# Fields that do not change what is computed: a checkpoint written under other values of
# these still resumes (more loader workers, a different tracking server, ...).
_NOT_IN_FINGERPRINT = (
    "workers",
    "eval_batch_size",
    "checkpoint",
    "metrics_dir",
    "tracking",
    "params_to_log",
    "backend",
    "progress",
)


@dataclass
class TrainConfig:
    """One training run.

    The learning rate follows the linear scaling rule: ``lr = base_lr * global_batch / 256``
    (``base_lr`` is the published 0.1 at batch 256). ``world_size`` is part of the recipe:
    it decides how each batch is split and how the data is sharded.
    """

    model: str
    manifest: str
    epochs: int
    image_size: int
    global_batch: int
    world_size: int
    base_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.0
    zero_init_residual: bool = False
    precision: str = "fp32"
    channels_last: str | bool = "auto"
    seed: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to create_model (lambda_implementation)
    eval_batch_size: int = 64
    workers: int = 0
    backend: str = "auto"
    checkpoint: str = "checkpoints/last.pt"
    metrics_dir: str = "metrics"
    progress: bool = True
    # MLflow: {"uri", "experiment", "system_metrics", "system_metrics_interval_s", "tags"}; None = no tracking.
    tracking: dict[str, Any] | None = None
    params_to_log: dict[str, Any] = field(default_factory=dict)

    @property
    def per_process_batch(self) -> int:
        return self.global_batch // self.world_size

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.global_batch / 256

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls(**json.loads(text))

    def fingerprint(self) -> str:
        """A hash of everything that decides the trained weights: a checkpoint resumes only under the same one.

        That is this record (less the fields that change nothing) and the manifest's content;
        the code is fingerprinted apart (:func:`source_digest`).
        """
        recipe = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_FINGERPRINT}
        recipe["manifest_content"] = Path(self.manifest).read_text(encoding="utf-8")
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def source_digest() -> str:
    """Hash of the library's model, data and training source files."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in _RECIPE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
