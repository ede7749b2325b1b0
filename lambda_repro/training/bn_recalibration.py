"""BatchNorm statistics recomputed at the end of training, before the final validation and checkpoint.

After a short run the running statistics are an average over rank 0's last batches of
RandomResizedCrop crops; the lambda layers square the error at every block and eval logits
become NaN (README, "Why that run's eval loss was NaN"). ``train.bn_recalibration_images``
images of the training split, seen with the eval preprocessing, replace them. Deterministic
(a fixed seeded subset in a fixed order), so a resumed run ends with the same buffers.
"""

from __future__ import annotations

from torch import nn

from lambda_repro.data import build_dataset, eval_transform, load_manifest
from lambda_repro.distributed import DistributedContext, broadcast_buffers
from lambda_repro.evaluation.recalibration import recalibrate_batchnorm
from lambda_repro.training.recipe import TrainConfig


def recalibrate_after_training(model: nn.Module, config: TrainConfig, context: DistributedContext) -> int:
    """Rank 0 recomputes every BatchNorm's statistics, then every rank takes them; returns the images used (0: off)."""
    if config.bn_recalibration_images <= 0:
        return 0
    used = 0
    if context.is_main:
        images = build_dataset(load_manifest(config.manifest), "train", eval_transform(config.image_size))
        used = recalibrate_batchnorm(
            model,
            images,
            images=config.bn_recalibration_images,
            batch_size=config.eval_batch_size,
            device=context.device,
            seed=config.seed,
        )
        print(f"BatchNorm statistics recomputed on {used} training images (eval preprocessing)")
    broadcast_buffers(model, context)
    return used
