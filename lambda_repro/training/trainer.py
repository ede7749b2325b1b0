"""The training loop of the published recipe, for one process of a (possibly distributed) job.

Read top to bottom: resolve devices and precision, build the model and optimizer, the data
(sharded with a DistributedSampler, augmentations seeded per image), resume from the last
checkpoint, then per epoch: train, validate, checkpoint, record. Stops early, with a
checkpoint, on SIGTERM / SIGINT; stops with an error naming the step on a NaN / inf loss.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lambda_repro.data import build_dataset, eval_transform, load_manifest, train_transform
from lambda_repro.distributed import DistributedContext, all_reduce_sum, broadcast_buffers
from lambda_repro.evaluation import evaluate
from lambda_repro.models import create_model
from lambda_repro.training import outcome
from lambda_repro.training.checkpointing import (
    ResumePoint,
    build_checkpoint,
    resume_from,
    write_checkpoint,
)
from lambda_repro.training.config import TrainConfig, source_digest
from lambda_repro.training.determinism import ResumableDistributedSampler, SeededAugmentation
from lambda_repro.training.faults import FaultInjector
from lambda_repro.training.metrics_files import write_history, write_summary
from lambda_repro.training.preemption import StopRequest
from lambda_repro.training.schedule import learning_rate

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    status: str  # outcome.FINISHED | PREEMPTED | FAILED
    message: str
    summary: dict | None = None


@dataclass
class EpochCounts:
    """Sums over the training batches of one epoch (so far), on this rank."""

    images: float = 0.0
    top1: float = 0.0
    loss_sum: float = 0.0
    seconds: float = 0.0

    def as_list(self) -> list[float]:
        return [self.images, self.top1, self.loss_sum, self.seconds]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (untested here: no GPU); fp32 on CPU, where bf16/fp16 autocast is slow."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if device.type != "cuda":
        if precision != "fp32":
            warnings.warn(f"train.precision={precision} applies on GPU only; training in fp32 on CPU", stacklevel=2)
        return None
    return PRECISIONS[precision]


def resolve_channels_last(setting: str | bool, device: torch.device) -> bool:
    """``auto``: channels_last on CUDA (tensor cores prefer NHWC; not run here: no GPU), off on CPU."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def zero_init_residual_branches(model: nn.Module) -> None:
    """Zero the last BatchNorm scale of every bottleneck, so that each block starts as the identity.

    Goyal et al. 2017 ("Accurate, large minibatch SGD"); timm's ResNets do it by default. Not
    in the published recipe, but without it Lambda-ResNet-50 diverges on the small embedded
    run (loss > 10 within 20 steps at lr 0.0125, measured).
    """
    for module in model.modules():
        last_norm = getattr(module, "bn3", None)
        if isinstance(last_norm, nn.BatchNorm2d):
            nn.init.zeros_(last_norm.weight)


def train(config: TrainConfig, context: DistributedContext, tracker=None, run_id: str | None = None) -> TrainResult:
    """Train (or resume training) as described by ``config``; every rank calls this with its ``context``.

    ``tracker`` (rank 0 only) is a started :class:`lambda_repro.tracking.RunTracker` or None,
    and ``run_id`` its MLflow run, recorded in the checkpoint so that a resumed run logs into
    the same MLflow run. Rank 0 writes the checkpoint and the metrics files.
    """
    log = print if context.is_main else (lambda *a, **k: None)
    device = context.device
    autocast_dtype = resolve_precision(config.precision, device)
    channels_last = resolve_channels_last(config.channels_last, device)
    if config.global_batch % context.world_size:
        raise ValueError(
            f"train.global_batch ({config.global_batch}) must be divisible by the world size ({context.world_size})"
        )
    batch = config.global_batch // context.world_size

    # Data: the manifest decides classes and files; its content is part of the recipe's fingerprint.
    manifest = load_manifest(config.manifest)
    classes = manifest["classes"]
    train_set = SeededAugmentation(build_dataset(manifest, "train", train_transform(config.image_size)), config.seed)
    val_set = build_dataset(manifest, "val", eval_transform(config.image_size))
    sampler = ResumableDistributedSampler(
        train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"train.global_batch ({config.global_batch}) is larger than the training set ({len(train_set)} images)"
        )
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    # Model and optimizer: the same seed gives every rank the same initial weights.
    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=len(classes), **config.model_kwargs).to(device)
    if config.zero_init_residual:
        zero_init_residual_branches(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.peak_lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype is torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    fingerprint, code_digest = config.fingerprint(), source_digest()
    point = resume_from(config.checkpoint, fingerprint, code_digest, model, optimizer, scaler, log=log)
    if point.epoch or point.step_in_epoch:
        log(f"resuming from {config.checkpoint}: epoch {point.epoch + 1}, step {point.step_in_epoch}")
    metrics_dir = Path(config.metrics_dir)

    def save(point: ResumePoint) -> None:
        if context.is_main:
            checkpoint = build_checkpoint(
                model=model,
                optimizer=optimizer,
                scaler=scaler,
                point=point,
                arch=config.model,
                classes=classes,
                fingerprint=fingerprint,
                code_digest=code_digest,
            )
            write_checkpoint(checkpoint, config.checkpoint)

    def summary() -> dict:
        last = point.history[-1] if point.history else {}
        trained_images = sum(row["img_per_s"] * row["epoch_s"] for row in point.history)
        train_seconds = sum(row["epoch_s"] for row in point.history)
        return {
            "epochs": len(point.history),
            "final_train_loss": last.get("train_loss"),
            "final_train_top1": last.get("train_top1"),
            "final_val_top1": last.get("val_top1"),
            "final_val_top5": last.get("val_top5"),
            "best_val_top1": point.best_val_top1,
            "img_per_s": trained_images / train_seconds if train_seconds else None,
            "world_size": context.world_size,
            "global_batch": config.global_batch,
            "peak_lr": config.peak_lr,
            "wall_s": round(point.wall_s, 1),
        }

    if point.finished:
        log(f"{config.checkpoint} already holds the finished run of this recipe: nothing to train")
        if context.is_main:
            write_history(metrics_dir / "train_history.csv", point.history)
            write_summary(metrics_dir / "train.json", summary())
        return TrainResult(outcome.FINISHED, "already trained", summary())

    if point.epoch == 0 and point.step_in_epoch == 0:
        # A checkpoint from the very start records the MLflow run, so even a crash in the
        # first epoch resumes into the same run.
        point.run_id = run_id
        save(point)
    if tracker is not None:
        tracker.log_params(
            {
                "derived.peak_lr": config.peak_lr,
                "derived.world_size": context.world_size,
                "derived.per_process_batch": batch,
                "derived.steps_per_epoch": steps_per_epoch,
                "derived.channels_last": channels_last,
                "derived.autocast": str(autocast_dtype),
                "derived.device": str(device),
            }
        )

    ddp_model = model
    if context.distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    faults = FaultInjector(context.rank, context.world_size, point.epoch * steps_per_epoch + point.step_in_epoch)

    with StopRequest() as stop:
        for epoch in range(point.epoch, config.epochs):
            skip_steps = point.step_in_epoch if epoch == point.epoch else 0
            sampler.set_position(epoch, skip_steps * batch)
            train_set.set_epoch(epoch)
            loader = DataLoader(
                train_set,
                batch_size=batch,
                sampler=sampler,
                num_workers=config.workers,
                pin_memory=device.type == "cuda",
                drop_last=True,
            )
            counts = EpochCounts()
            # A resumed epoch carries the interrupted part's sums (saved globally, so added on rank 0 only).
            if skip_steps and point.partial_counts and context.is_main:
                counts = EpochCounts(*point.partial_counts)
            ddp_model.train()
            epoch_start = time.perf_counter()
            step_in_epoch = skip_steps
            bar = tqdm(
                total=steps_per_epoch,
                initial=skip_steps,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not (context.is_main and config.progress),
                leave=False,
            )
            stopped = False
            try:
                for images, targets in loader:
                    step = epoch * steps_per_epoch + step_in_epoch
                    faults.before_step(step)
                    # All ranks agree on stopping before the forward pass, which changes BatchNorm statistics.
                    if all_reduce_sum(torch.tensor([float(stop.requested)]), context).item() > 0:
                        stopped = True
                        break
                    lr = learning_rate(step, total_steps, config.peak_lr, warmup_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    images = images.to(device, non_blocking=True)
                    targets = targets.to(device, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        logits = ddp_model(images)
                        loss = criterion(logits, targets)
                    if faults.corrupt_loss(step):
                        loss = loss * float("nan")

                    # All ranks agree on a bad loss before the backward pass would spread it into the weights.
                    if all_reduce_sum(torch.tensor([float(not torch.isfinite(loss).item())]), context).item() > 0:
                        raise NonFiniteLossError(
                            f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step_in_epoch} "
                            f"(global step {step}, lr {lr:.4g})"
                        )

                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()

                    with torch.no_grad():
                        counts.images += targets.shape[0]
                        counts.top1 += (logits.argmax(dim=1) == targets).sum().item()
                        counts.loss_sum += loss.item() * targets.shape[0]
                    step_in_epoch += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
            except NonFiniteLossError as err:
                bar.close()
                done = f"epoch {point.epoch}" if point.epoch else "none yet"
                message = f"{err}; training stopped, last good checkpoint kept: {config.checkpoint} ({done})"
                if tracker is not None:
                    tracker.log_event("non_finite_loss", message, step=epoch * steps_per_epoch + step_in_epoch)
                return TrainResult(outcome.FAILED, message)
            bar.close()

            seconds = time.perf_counter() - epoch_start
            counts.seconds += seconds
            point.wall_s += seconds
            totals = all_reduce_sum(torch.tensor(counts.as_list(), dtype=torch.float64), context).tolist()
            images_done, top1_done, loss_done, _ = totals
            if stopped:
                # Save the exact position: the resumed run replays the rest of this epoch identically.
                point.epoch, point.step_in_epoch = epoch, step_in_epoch
                point.partial_counts = [images_done, top1_done, loss_done, counts.seconds]
                save(point)
                message = (
                    f"stopped by {stop.signal_name or 'a signal on another rank'} at epoch {epoch + 1}, "
                    f"step {step_in_epoch}; checkpoint saved to {config.checkpoint}; run again to resume"
                )
                log(message)
                if tracker is not None:
                    tracker.log_event("preempted", message, step=epoch * steps_per_epoch + step_in_epoch)
                return TrainResult(outcome.PREEMPTED, message)

            # BatchNorm statistics drift apart on each rank's last batch; score with rank 0's (the saved ones).
            broadcast_buffers(model, context)
            val = evaluate(
                model,
                val_set,
                batch_size=config.eval_batch_size,
                device=device,
                context=context,
                channels_last=channels_last,
                autocast_dtype=autocast_dtype,
                progress=config.progress,
                description="val",
            )
            epoch_seconds = counts.seconds  # training time of the epoch, across interruptions
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_done / images_done,
                "train_top1": 100.0 * top1_done / images_done,
                "lr": learning_rate(epoch * steps_per_epoch, total_steps, config.peak_lr, warmup_steps),
                "img_per_s": images_done / epoch_seconds if epoch_seconds > 0 else math.nan,
                "val_top1": val["top1"],
                "val_top5": val["top5"],
                "epoch_s": epoch_seconds,
            }
            point.history.append(row)
            point.best_val_top1 = max(point.best_val_top1, val["top1"])
            point.epoch, point.step_in_epoch, point.partial_counts = epoch + 1, 0, None
            point.finished = epoch + 1 == config.epochs
            save(point)
            log(
                f"epoch {epoch + 1}/{config.epochs}: "
                f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.1f}% | "
                f"val top-1 {row['val_top1']:.1f}% top-5 {row['val_top5']:.1f}% | {row['img_per_s']:.1f} img/s, "
                f"{seconds:.0f} s"
            )
            if context.is_main:
                write_history(metrics_dir / "train_history.csv", point.history)
            if tracker is not None:
                tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)

    if context.is_main:
        write_summary(metrics_dir / "train.json", summary())
    if tracker is not None:
        final = {k if k.startswith("final_") else f"final_{k}": v for k, v in summary().items()}
        tracker.log_metrics({k: v for k, v in final.items() if isinstance(v, int | float)})
        # The trained weights, browsable and downloadable beside the run's metrics.
        tracker.log_artifact(config.checkpoint, artifact_path="checkpoints")
    return TrainResult(outcome.FINISHED, f"trained {config.epochs} epochs", summary())
