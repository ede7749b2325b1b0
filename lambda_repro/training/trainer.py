"""The training loop of the published recipe, for one process of a (possibly distributed) job.

In torchvision's shape: :func:`setup` builds the data (sharded with a DistributedSampler,
augmentations seeded per image), the model and the optimizer; :func:`train` resumes from
the last checkpoint, then per epoch calls :func:`train_one_epoch` and, when the epoch
completed, :func:`end_of_epoch` (validate, record the history, checkpoint, log). An epoch
ends early, with a checkpoint, on SIGTERM / SIGINT, and with an error naming the step on a
NaN / inf loss.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lambda_repro.data import build_dataset, eval_transform, load_manifest, train_transform
from lambda_repro.distributed import DistributedContext, all_reduce_sum, broadcast_buffers
from lambda_repro.evaluation import evaluate
from lambda_repro.models import create_model, formulation_choices
from lambda_repro.training import outcome
from lambda_repro.training.bn_recalibration import recalibrate_after_training
from lambda_repro.training.determinism import EpochTaggedSampler, ResumableDistributedSampler, SeededAugmentation
from lambda_repro.training.device_options import resolve_channels_last, resolve_pin_memory, resolve_precision
from lambda_repro.training.faults import hooks_from_environment
from lambda_repro.training.formulations import agree_on_formulations, formulation_params
from lambda_repro.training.hooks import StepHooks
from lambda_repro.training.metrics_files import write_history, write_summary
from lambda_repro.training.optim import create_optimizer
from lambda_repro.training.preemption import StopRequest
from lambda_repro.training.recipe import TrainConfig, source_digest
from lambda_repro.training.resume import (
    ResumePoint,
    build_checkpoint,
    resume_disagreement,
    resume_from,
    write_checkpoint,
)
from lambda_repro.training.schedule import learning_rate

# How an epoch's pass over the training shard ended.
COMPLETED, STOPPED, DIVERGED = "completed", "stopped", "diverged"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    status: str  # outcome.FINISHED | PREEMPTED | FAILED
    message: str
    summary: dict | None = None


@dataclass
class EpochCounts:
    """Sums over the training batches of one epoch (so far)."""

    images: float = 0.0
    top1: float = 0.0
    loss_sum: float = 0.0
    seconds: float = 0.0

    def as_list(self) -> list[float]:
        return [self.images, self.top1, self.loss_sum, self.seconds]


@dataclass(frozen=True)
class EpochOutcome:
    """What :func:`train_one_epoch` hands back: how the pass ended and what it counted.

    ``totals`` are summed over all ranks, except ``seconds``: this rank's training time of
    the epoch, across interruptions (unset when it diverged: nothing is saved then).
    """

    status: str  # COMPLETED | STOPPED | DIVERGED
    steps_done: int  # steps of this epoch done, resumed ones included
    totals: EpochCounts | None = None
    seconds: float = 0.0  # wall time of this pass alone
    message: str = ""


@dataclass(frozen=True)
class TrainingSetup:
    """Everything built once before the first epoch; read, never changed, by the epoch functions."""

    model: nn.Module  # the bare model (saved, validated)
    ddp_model: nn.Module  # what the training steps call (DDP-wrapped when distributed)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    train_set: SeededAugmentation
    val_set: Dataset
    sampler: ResumableDistributedSampler
    loader: DataLoader  # built once: persistent workers live across epochs
    classes: list[str]
    batch: int  # per process and micro-step
    steps_per_epoch: int  # optimizer steps
    total_steps: int
    warmup_steps: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    fingerprint: str
    code_digest: str


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


def setup(config: TrainConfig, context: DistributedContext) -> TrainingSetup:
    """Data, model, optimizer and schedule lengths; the same seed gives every rank the same initial weights.

    The model is wrapped in DDP later (:func:`wrap_for_distributed`), after resuming.
    """
    device = context.device
    autocast_dtype = resolve_precision(config.precision, device, config.cpu_autocast)
    channels_last = resolve_channels_last(config.channels_last, device)
    # Per process and micro-step; divisible: checked with the params.
    batch = config.global_batch // (context.world_size * config.accumulation_steps)

    # Data: the manifest decides classes and files; its content is part of the recipe's fingerprint.
    manifest = load_manifest(config.manifest)
    train_set = SeededAugmentation(build_dataset(manifest, "train", train_transform(config.image_size)), config.seed)
    val_set = build_dataset(manifest, "val", eval_transform(config.image_size))
    sampler = ResumableDistributedSampler(
        train_set,
        num_replicas=context.world_size,
        rank=context.rank,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
        accumulation_steps=config.accumulation_steps,
        micro_batch=batch,
    )
    steps_per_epoch = sampler.steps_per_epoch
    loader = DataLoader(
        train_set,
        batch_size=batch,
        sampler=EpochTaggedSampler(sampler),
        num_workers=config.workers,
        pin_memory=resolve_pin_memory(config.pin_memory, device),
        persistent_workers=config.persistent_workers and config.workers > 0,
        drop_last=True,
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"train.global_batch ({config.global_batch}) is larger than the training set ({len(train_set)} images)"
        )

    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=len(manifest["classes"]), **config.model_kwargs).to(device)
    if config.zero_init_residual:
        zero_init_residual_branches(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.peak_lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    return TrainingSetup(
        model=model,
        ddp_model=model,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16),
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        train_set=train_set,
        val_set=val_set,
        sampler=sampler,
        loader=loader,
        classes=manifest["classes"],
        batch=batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.epochs,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        device=device,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
        fingerprint=config.fingerprint(),
        code_digest=source_digest(),
    )


def wrap_for_distributed(run: TrainingSetup, context: DistributedContext) -> TrainingSetup:
    if not context.distributed:
        return run
    device_ids = [run.device.index] if run.device.type == "cuda" else None
    return replace(run, ddp_model=DistributedDataParallel(run.model, device_ids=device_ids))


def save_resume_point(run: TrainingSetup, config: TrainConfig, context: DistributedContext, point: ResumePoint) -> None:
    """Rank 0 writes the checkpoint of ``point`` (atomically)."""
    if not context.is_main:
        return
    point = replace(point, lambda_formulations=formulation_choices(run.model) or point.lambda_formulations)
    checkpoint = build_checkpoint(
        model=run.model,
        optimizer=run.optimizer,
        scaler=run.scaler,
        point=point,
        arch=config.model,
        classes=run.classes,
        fingerprint=run.fingerprint,
        code_digest=run.code_digest,
    )
    write_checkpoint(checkpoint, config.checkpoint)


def run_summary(point: ResumePoint, config: TrainConfig, world_size: int) -> dict:
    """``metrics/train.json``: the last epoch's figures, the best val top-1 and the run's throughput."""
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
        "world_size": world_size,
        "global_batch": config.global_batch,
        "peak_lr": config.peak_lr,
        "wall_s": round(point.wall_s, 1),
    }


def _agreed(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    return all_reduce_sum(torch.tensor([float(flag)]), context).item() > 0


@dataclass
class _Window:
    """Steps since the last host sync: their losses stay on the device until :func:`_sync_window` reads them."""

    steps: list[tuple[int, float]]  # (step in epoch, lr)
    losses: list[torch.Tensor]  # per step: the sum of its micro-batch losses (non-finite if any is)


def _sync_window(window: _Window, stop: StopRequest, context: DistributedContext) -> tuple[bool, int | None]:
    """One all-reduce of the stop flag and each step's finiteness: ``(stop agreed, first bad index or None)``."""
    stop_flag = torch.tensor([float(stop.requested)], dtype=torch.float64, device=context.device)
    if window.losses:
        bad_steps = (~torch.isfinite(torch.stack(window.losses))).to(torch.float64)  # still on the device
        stop_flag = torch.cat([stop_flag, bad_steps.to(stop_flag.device)])
    flags = stop_flag
    summed = all_reduce_sum(flags, context)
    bad = torch.nonzero(summed[1:] > 0)
    return bool(summed[0] > 0), int(bad[0]) if len(bad) else None


def _diverged_message(epoch: int, step_in_epoch: int, step: int, lr: float, loss: float) -> str:
    return f"non-finite loss ({loss}) at epoch {epoch + 1}, step {step_in_epoch} (global step {step}, lr {lr:.4g})"


def train_one_epoch(
    run: TrainingSetup,
    config: TrainConfig,
    context: DistributedContext,
    epoch: int,
    *,
    first_step: int,
    carried: EpochCounts,
    stop: StopRequest,
    hooks: StepHooks,
) -> EpochOutcome:
    """One pass over this rank's shard from step ``first_step`` of ``epoch`` (non-zero when resuming).

    ``carried`` are the sums of the interrupted part of a resumed epoch. A step is
    ``train.accumulation_steps`` micro-batches; DDP all-reduces gradients on the last one
    only (``no_sync`` on the others). Host syncs: with ``train.sync_every`` 1, ranks agree
    on stopping before each step's forward pass (which changes BatchNorm statistics) and on
    a bad loss before each backward pass would spread it into the weights. With N > 1 the
    losses and counts stay on the device, and the stop flag and every step's finiteness are
    agreed in one all-reduce every N steps (and at the epoch's end): a NaN is then found up
    to N - 1 steps late (the weights in memory took it; nothing is saved) and is still
    reported at its own step, the first non-finite one of the window.
    """
    run.sampler.set_position(epoch, first_step * run.batch * config.accumulation_steps)
    run.train_set.set_epoch(epoch)
    every_step = config.sync_every == 1
    micro_steps = config.accumulation_steps
    counts = replace(carried)
    # On the device, read once at the end: no host sync per step.
    top1_sum = torch.tensor(counts.top1, dtype=torch.float64, device=run.device)
    loss_sum = torch.tensor(counts.loss_sum, dtype=torch.float64, device=run.device)
    run.ddp_model.train()
    start = time.perf_counter()
    step_in_epoch, status, message = first_step, COMPLETED, ""
    window = _Window([], [])
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=first_step,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (context.is_main and config.progress),
        leave=False,
    )
    batches = iter(run.loader)
    while True:
        step = epoch * run.steps_per_epoch + step_in_epoch
        at_end = step_in_epoch == run.steps_per_epoch
        if not at_end:
            hooks.before_step(step)
        if every_step and not at_end:
            if _agreed(stop.requested, context):
                status = STOPPED
                break
        elif not every_step and (step_in_epoch == first_step or at_end or len(window.steps) == config.sync_every):
            # Also before a pass's first step: a stop that came during the last epoch's final window.
            stopped, bad = _sync_window(window, stop, context)
            if bad is not None:
                bad_step, bad_lr = window.steps[bad]
                loss_value = window.losses[bad].item() / micro_steps
                status = DIVERGED
                message = _diverged_message(epoch, bad_step, epoch * run.steps_per_epoch + bad_step, bad_lr, loss_value)
                break
            if window.steps:
                bar.set_postfix(loss=f"{window.losses[-1].item() / micro_steps:.3f}", lr=f"{window.steps[-1][1]:.3g}")
            window = _Window([], [])
            if stopped and not at_end:
                status = STOPPED
                break
        if at_end:
            break
        lr = learning_rate(step, run.total_steps, config.peak_lr, run.warmup_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        run.optimizer.zero_grad(set_to_none=True)
        step_loss = None
        for micro in range(micro_steps):
            images, targets = next(batches)
            last = micro == micro_steps - 1
            # Gradients are all-reduced on the step's last micro-batch only.
            wrapped = run.ddp_model is not run.model
            with run.ddp_model.no_sync() if wrapped and not last else contextlib.nullcontext():
                logits, loss, targets = _forward(run, images, targets)
                loss = hooks.on_loss(step, loss)
                if every_step and _agreed(not torch.isfinite(loss).item(), context):
                    status = DIVERGED
                    message = _diverged_message(epoch, step_in_epoch, step, lr, loss.item())
                    break
                run.scaler.scale(loss / micro_steps if micro_steps > 1 else loss).backward()
            with torch.no_grad():
                counts.images += targets.shape[0]
                top1_sum += (logits.argmax(dim=1) == targets).sum()
                loss_sum += loss.detach().double() * targets.shape[0]
                step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
        if status == DIVERGED:
            break
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if every_step:
            bar.set_postfix(loss=f"{step_loss.item() / micro_steps:.3f}", lr=f"{lr:.3g}")
        else:
            window.steps.append((step_in_epoch, lr))
            window.losses.append(step_loss)
        step_in_epoch += 1
        bar.update(1)
    bar.close()
    del batches  # stops the workers of an interrupted pass (persistent ones restart with the next epoch)
    if status == DIVERGED:
        return EpochOutcome(DIVERGED, step_in_epoch, message=message)
    seconds = time.perf_counter() - start
    counts.seconds += seconds
    counts.top1, counts.loss_sum = top1_sum.item(), loss_sum.item()
    images_done, top1_done, loss_done, _ = all_reduce_sum(
        torch.tensor(counts.as_list(), dtype=torch.float64), context
    ).tolist()
    totals = EpochCounts(images_done, top1_done, loss_done, counts.seconds)
    return EpochOutcome(status, step_in_epoch, totals, seconds)


def _forward(run: TrainingSetup, images: torch.Tensor, targets: torch.Tensor):
    images = images.to(run.device, non_blocking=True)
    targets = targets.to(run.device, non_blocking=True)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.autocast_dtype is not None):
        logits = run.ddp_model(images)
        loss = run.criterion(logits, targets)
    return logits, loss, targets


def end_of_epoch(
    run: TrainingSetup,
    config: TrainConfig,
    context: DistributedContext,
    point: ResumePoint,
    epoch: int,
    result: EpochOutcome,
    tracker=None,
) -> ResumePoint:
    """Validate, append the epoch to the history, checkpoint and log; returns the point after ``epoch``."""
    # BatchNorm statistics drift apart on each rank's last batch; score with rank 0's (the saved ones).
    broadcast_buffers(run.model, context)
    if epoch + 1 == config.epochs:
        recalibrate_after_training(run.model, config, context)  # before the final validation and checkpoint
    val = evaluate(
        run.model,
        run.val_set,
        batch_size=config.eval_batch_size,
        device=run.device,
        context=context,
        workers=config.workers,
        pin_memory=resolve_pin_memory(config.pin_memory, run.device),
        channels_last=run.channels_last,
        autocast_dtype=run.autocast_dtype,
        progress=config.progress,
        description="val",
    )
    totals = result.totals
    row = {
        "epoch": epoch + 1,
        "train_loss": totals.loss_sum / totals.images,
        "train_top1": 100.0 * totals.top1 / totals.images,
        "lr": learning_rate(epoch * run.steps_per_epoch, run.total_steps, config.peak_lr, run.warmup_steps),
        "img_per_s": totals.images / totals.seconds if totals.seconds > 0 else math.nan,
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "epoch_s": totals.seconds,  # training time of the epoch, across interruptions
    }
    point = replace(
        point,
        epoch=epoch + 1,
        step_in_epoch=0,
        partial_counts=None,
        history=[*point.history, row],
        best_val_top1=max(point.best_val_top1, val["top1"]),
        wall_s=point.wall_s + result.seconds,
        finished=epoch + 1 == config.epochs,
    )
    save_resume_point(run, config, context, point)
    if context.is_main:
        print(
            f"epoch {epoch + 1}/{config.epochs}: "
            f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.1f}% | "
            f"val top-1 {row['val_top1']:.1f}% top-5 {row['val_top5']:.1f}% | {row['img_per_s']:.1f} img/s, "
            f"{result.seconds:.0f} s"
        )
        write_history(Path(config.metrics_dir) / "train_history.csv", point.history)
    if tracker is not None:
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
    return point


def stop_mid_epoch(
    run: TrainingSetup,
    config: TrainConfig,
    context: DistributedContext,
    point: ResumePoint,
    epoch: int,
    result: EpochOutcome,
    signal_name: str | None,
    tracker=None,
) -> TrainResult:
    """Save the exact position: the resumed run replays the rest of this epoch identically."""
    totals = result.totals
    point = replace(
        point,
        epoch=epoch,
        step_in_epoch=result.steps_done,
        partial_counts=totals.as_list(),
        wall_s=point.wall_s + result.seconds,
    )
    save_resume_point(run, config, context, point)
    message = (
        f"stopped by {signal_name or 'a signal on another rank'} at epoch {epoch + 1}, "
        f"step {result.steps_done}; checkpoint saved to {config.checkpoint}; run again to resume"
    )
    if context.is_main:
        print(message)
    if tracker is not None:
        tracker.log_event("preempted", message, step=epoch * run.steps_per_epoch + result.steps_done)
    return TrainResult(outcome.PREEMPTED, message)


def diverged(run: TrainingSetup, config: TrainConfig, point: ResumePoint, epoch: int, result: EpochOutcome, tracker):
    """The run stops; the last good checkpoint (the end of the last finished epoch) stays."""
    done = f"epoch {point.epoch}" if point.epoch else "none yet"
    message = f"{result.message}; training stopped, last good checkpoint kept: {config.checkpoint} ({done})"
    if tracker is not None:
        tracker.log_event("non_finite_loss", message, step=epoch * run.steps_per_epoch + result.steps_done)
    return TrainResult(outcome.FAILED, message)


def finish(run_point: ResumePoint, config: TrainConfig, context: DistributedContext, tracker=None) -> TrainResult:
    """Write the summary, log the final metrics and the trained weights."""
    summary = run_summary(run_point, config, context.world_size)
    if context.is_main:
        write_summary(Path(config.metrics_dir) / "train.json", summary)
    if tracker is not None:
        # No final_* metrics: they repeat the curves' last points (one-point charts in MLflow's UI).
        # The trained weights, browsable and downloadable beside the run's metrics.
        tracker.log_artifact(config.checkpoint, artifact_path="checkpoints")
    return TrainResult(outcome.FINISHED, f"trained {config.epochs} epochs", summary)


def log_derived_params(run: TrainingSetup, config: TrainConfig, context: DistributedContext, tracker) -> None:
    tracker.log_params(
        {
            "derived.peak_lr": config.peak_lr,
            "derived.world_size": context.world_size,
            "derived.per_process_batch": run.batch,
            "derived.accumulation_steps": config.accumulation_steps,
            "derived.steps_per_epoch": run.steps_per_epoch,
            "derived.channels_last": run.channels_last,
            "derived.autocast": str(run.autocast_dtype),
            "derived.device": str(run.device),
            **formulation_params(run.model),
        }
    )


def train(config: TrainConfig, context: DistributedContext, tracker=None, run_id: str | None = None) -> TrainResult:
    """Train (or resume training) as described by ``config``; every rank calls this with its ``context``.

    ``tracker`` (rank 0 only) is a started :class:`lambda_repro.tracking.RunTracker` or None,
    and ``run_id`` its MLflow run, recorded in the checkpoint so that a resumed run logs into
    the same MLflow run. Rank 0 writes the checkpoint and the metrics files.
    """
    run = setup(config, context)
    log = print if context.is_main else (lambda *a, **k: None)
    point = resume_from(
        config.checkpoint, run.fingerprint, run.code_digest, run.model, run.optimizer, run.scaler, log=log
    )
    # Node-local disks: every rank must resume from the same point, or none trains (before anything is written).
    disagreement = resume_disagreement(point, config.checkpoint, context)
    if disagreement:
        log(disagreement)
        return TrainResult(outcome.FAILED, disagreement)
    if point.epoch or point.step_in_epoch:
        log(f"resuming from {config.checkpoint}: epoch {point.epoch + 1}, step {point.step_in_epoch}")
    if point.finished:
        log(f"{config.checkpoint} already holds the finished run of this recipe: nothing to train")
        if context.is_main:
            write_history(Path(config.metrics_dir) / "train_history.csv", point.history)
            write_summary(Path(config.metrics_dir) / "train.json", run_summary(point, config, context.world_size))
        return TrainResult(outcome.FINISHED, "already trained", run_summary(point, config, context.world_size))
    # A resumed run repeats the recorded formulations; ``measured``: rank 0 times them, every rank pins its choice.
    agree_on_formulations(
        run.model,
        context,
        recorded=point.lambda_formulations,
        measure=config.measure_formulations,
        batch_shape=(run.batch, 3, config.image_size, config.image_size),
    )
    if point.epoch == 0 and point.step_in_epoch == 0:
        # A checkpoint from the very start records the MLflow run, so even a crash in the
        # first epoch resumes into the same run.
        point = replace(point, run_id=run_id)
        save_resume_point(run, config, context, point)
    if tracker is not None:
        log_derived_params(run, config, context, tracker)
    run = wrap_for_distributed(run, context)
    hooks = hooks_from_environment(
        context.rank, context.world_size, point.epoch * run.steps_per_epoch + point.step_in_epoch
    )

    with StopRequest() as stop:
        for epoch in range(point.epoch, config.epochs):
            first_step = point.step_in_epoch if epoch == point.epoch else 0
            # A resumed epoch carries the interrupted part's sums (saved globally, so added on rank 0 only).
            resumed = first_step and point.partial_counts and context.is_main
            carried = EpochCounts(*point.partial_counts) if resumed else EpochCounts()
            result = train_one_epoch(
                run, config, context, epoch, first_step=first_step, carried=carried, stop=stop, hooks=hooks
            )
            if result.status == DIVERGED:
                return diverged(run, config, point, epoch, result, tracker)
            if result.status == STOPPED:
                return stop_mid_epoch(run, config, context, point, epoch, result, stop.signal_name, tracker)
            point = end_of_epoch(run, config, context, point, epoch, result, tracker)
    if tracker is not None:
        tracker.log_params(formulation_params(run.model))  # what the "auto" layers ran, now that they ran
    return finish(point, config, context, tracker)
