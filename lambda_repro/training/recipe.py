"""Everything one training run needs to know, in one serialisable record."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lambda_repro.models import options_for
from lambda_repro.param_types import boolean, choice, integer, number, section_of, setting
from lambda_repro.param_types import path as path_param
from lambda_repro.training.formulations import MEASURED
from lambda_repro.training.optim import OPTIMIZERS

# The code that decides the trained weights: a change in it makes an old checkpoint stale.
_RECIPE_PACKAGES = ("models", "data", "training")

# Fields that do not change what is computed: a checkpoint written under other values of
# these still resumes (more loader workers, a different tracking server, ...).
_NOT_IN_FINGERPRINT = (
    "workers",
    "persistent_workers",
    "pin_memory",
    "sync_every",
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
    """One training run: the ``train`` knobs of params.yaml (each declared once, below) plus what the stage adds.

    The learning rate follows the linear scaling rule: ``lr = base_lr * global_batch / 256``
    (the published 0.1 at batch 256). ``world_size`` is part of the recipe: it decides how
    each batch is split and how the data is sharded. Defaults are params.yaml's (the
    embedded run); build from params with :meth:`from_params`.
    """

    model: str
    manifest: str
    world_size: int
    # The `train` section of params.yaml: check, default and doc of every knob.
    epochs: int = setting(integer(minimum=1), 8, "epochs to train")
    image_size: int = setting(integer(minimum=8), 64, "training crop side (published: 224)")
    global_batch: int = setting(
        integer(minimum=1), 32, "images per step across all processes; lr = base_lr * global_batch / 256"
    )
    accumulation_steps: int = setting(
        integer(minimum=1),
        1,
        "micro-batches per optimizer step (fewer devices, same global batch: 256 = 1 x 8 x 32 = 2 x 4 x 32)",
    )
    optimizer: str = setting(choice(lambda: OPTIMIZERS), "sgd", "sgd (published, with momentum) or adamw")
    base_lr: float = setting(number(gt=0), 0.2, "lr at global batch 256 (published: 0.1)")
    momentum: float = setting(number(ge=0, lt=1), 0.9, "SGD momentum (AdamW: beta1)")
    weight_decay: float = setting(number(ge=0), 1e-4, "weight decay (published: 1e-4)")
    label_smoothing: float = setting(number(ge=0, lt=1), 0.1, "label smoothing of the cross-entropy")
    warmup_epochs: int = setting(integer(minimum=0), 0, "linear warmup before the cosine decay, in epochs")
    zero_init_residual: bool = setting(
        boolean(), True, "last BN of each block starts at 0 (not published; the small run diverges without)"
    )
    precision: str = setting(
        choice(lambda: ("fp32", "bf16", "fp16")), "fp32", "autocast dtype on GPU: fp32, bf16 or fp16 (fp32 on CPU)"
    )
    cpu_autocast: bool = setting(
        boolean(), False, "honour train.precision on CPU too (slow; proves the GPU's autocast path on CPU)"
    )
    channels_last: str | bool = setting(choice(lambda: ("auto", True, False)), "auto", "auto = on for CUDA and CPU")
    workers: int = setting(integer(minimum=0), 0, "DataLoader workers per process (0: load in the training process)")
    persistent_workers: bool = setting(boolean(), False, "keep the loader workers alive across epochs (workers > 0)")
    pin_memory: str | bool = setting(choice(lambda: ("auto", True, False)), "auto", "page-locked batches; auto = CUDA")
    sync_every: int = setting(
        integer(minimum=1), 1, "steps between host syncs of loss, counts, stop flag and NaN check (1: every step)"
    )
    checkpoint: str = setting(path_param(), "checkpoints/last.pt", "the resumable checkpoint (kept across runs)")
    bn_recalibration_images: int = setting(
        integer(minimum=0),
        0,
        "after the last epoch, recompute BN statistics on this many train images, eval preprocessing (0 = off)",
    )
    # Set by the stage from other sections (seed, model, distributed, evaluate, tracking) and its arguments.
    seed: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to create_model (lambda_implementation)
    measure_formulations: bool = False  # model.lambda_implementation: measured (rank 0 times them at setup)
    eval_batch_size: int = 64
    backend: str = "auto"
    metrics_dir: str = "metrics"
    progress: bool = True
    # MLflow: {"uri", "experiment", "system_metrics", "system_metrics_interval_s", "tags"}; None = no tracking.
    tracking: dict[str, Any] | None = None
    params_to_log: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict[str, Any], world_size: int, **stage_fields: Any) -> TrainConfig:
        """The run described by (checked) params: the ``train`` section, plus ``seed``, ``model``, ``data.manifest``.

        ``stage_fields`` are what the stage adds (``tracking``, ``metrics_dir``, ...).
        """
        return cls(
            model=params["model"]["name"],
            model_kwargs=model_options(params["model"]),
            measure_formulations=params["model"]["lambda_implementation"] == MEASURED,
            manifest=params["data"]["manifest"],
            world_size=world_size,
            seed=params["seed"],
            backend=params["distributed"]["backend"],
            params_to_log=params,
            **section_of(cls, params["train"]),
            **stage_fields,
        )

    @property
    def per_process_batch(self) -> int:
        """Images one process takes per micro-step (global batch over world size and accumulation steps)."""
        return self.global_batch // (self.world_size * self.accumulation_steps)

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


def model_options(model: dict[str, Any]) -> dict[str, Any]:
    """``create_model`` keyword arguments of the ``model`` section: those the named model takes (the registry says).

    ``measured`` builds ``auto`` layers; the training stage then measures and pins them.
    """
    implementation = model["lambda_implementation"]
    return options_for(model["name"], lambda_implementation="auto" if implementation == MEASURED else implementation)


def source_digest() -> str:
    """Hash of the library's model, data and training source files."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in _RECIPE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
