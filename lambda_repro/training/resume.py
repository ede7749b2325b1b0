"""What a training checkpoint holds, and picking up from one.

A checkpoint is the published layout (``state_dict``, ``epoch``, ``arch``, ``best_acc1``,
``optimizer``) plus what resuming needs: the position inside an epoch (non-zero only after
a preemption), the partial epoch's counts, the history so far, the MLflow run, the
fingerprint of the recipe (parameters and dataset) and a digest of the training code.

Training starts from scratch when the recipe changed, or when the code changed since the
run *finished* (DVC reruns the stage for that: the user wants new weights). An unfinished
run whose code changed resumes, with a warning: hours of training are not thrown away for
an edit that may not touch the results.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lambda_repro.distributed import DistributedContext, all_gather_object, node_name
from lambda_repro.models import CheckpointError, read_checkpoint, save_checkpoint
from lambda_repro.models.checkpoint import strip_wrapper_prefixes, unwrap_model


@dataclass
class ResumePoint:
    """Where training continues: ``epoch`` finished epochs plus ``step_in_epoch`` steps of the next."""

    epoch: int = 0
    step_in_epoch: int = 0
    partial_counts: list[float] | None = None  # [images, top1, loss_sum, seconds] of the interrupted epoch
    history: list[dict] = field(default_factory=list)
    best_val_top1: float = 0.0
    run_id: str | None = None
    wall_s: float = 0.0
    finished: bool = False


def build_checkpoint(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    point: ResumePoint,
    arch: str,
    classes: list[str],
    fingerprint: str,
    code_digest: str,
) -> dict[str, Any]:
    checkpoint = {
        "state_dict": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": point.epoch,
        "step_in_epoch": point.step_in_epoch,
        "partial_counts": point.partial_counts,
        "arch": arch,
        "classes": list(classes),
        "best_acc1": point.best_val_top1,
        "history": point.history,
        "mlflow_run_id": point.run_id,
        "train_wall_s": point.wall_s,
        "finished": point.finished,
        "fingerprint": fingerprint,
        "code_digest": code_digest,
    }
    if scaler is not None and scaler.is_enabled():
        checkpoint["scaler"] = scaler.state_dict()
    return checkpoint


def write_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Atomic: an interrupted write or a full disk leaves the previous checkpoint in place."""
    save_checkpoint(checkpoint, path)


def resume_from(
    path: str | Path,
    fingerprint: str,
    code_digest: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    log=print,
) -> ResumePoint:
    """Load the state of ``path`` into model / optimizer / scaler if it was written by this recipe.

    Returns a fresh :class:`ResumePoint` (start from scratch) when there is no checkpoint,
    it belongs to another recipe, or it finished under other code. An unreadable checkpoint
    is an error: it is never silently overwritten.
    """
    path = Path(path)
    if not path.exists():
        return ResumePoint()
    checkpoint = read_checkpoint(path)
    if checkpoint.get("fingerprint") != fingerprint:
        log(f"{path} was written by another recipe (parameters or data changed): training from scratch")
        return ResumePoint()
    code_changed = checkpoint.get("code_digest") != code_digest
    if code_changed and checkpoint.get("finished"):
        log(f"{path} holds a run finished by other training code: training from scratch")
        return ResumePoint()
    if code_changed:
        log(f"warning: the training code changed since {path} was written; resuming it anyway")
    try:
        unwrap_model(model).load_state_dict(strip_wrapper_prefixes(checkpoint["state_dict"]), strict=True)
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot resume from {path}: {err}") from None
    return ResumePoint(
        epoch=int(checkpoint["epoch"]),
        step_in_epoch=int(checkpoint.get("step_in_epoch", 0)),
        partial_counts=checkpoint.get("partial_counts"),
        history=list(checkpoint.get("history", [])),
        best_val_top1=float(checkpoint.get("best_acc1", 0.0)),
        run_id=checkpoint.get("mlflow_run_id"),
        wall_s=float(checkpoint.get("train_wall_s", 0.0)),
        finished=bool(checkpoint.get("finished", False)),
    )


def recorded_run_id(path: str | Path, fingerprint: str, code_digest: str) -> str | None:
    """The MLflow run of the checkpoint at ``path`` if training will resume from it, else None."""
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError:
        return None
    if checkpoint.get("fingerprint") != fingerprint:
        return None
    if checkpoint.get("finished") and checkpoint.get("code_digest") != code_digest:
        return None
    return checkpoint.get("mlflow_run_id")


def file_digest(path: str | Path) -> str | None:
    """sha256 (first 16 hex digits) of the file's bytes; None when there is no file."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def resume_disagreement(point: ResumePoint, path: str | Path, context: DistributedContext) -> str | None:
    """None when every rank resumes from the same point; else one line naming what each node sees.

    On node-local disks a node may miss the checkpoint (or hold an older one): that node
    would start over while the others resume, and DDP would average diverging models. The
    signature is (epoch, step in epoch, digest of the checkpoint file); one local rank per
    node speaks for it (its ranks read the same disk).
    """
    digest = file_digest(path) if point.epoch or point.step_in_epoch or point.finished else None
    signature = (point.epoch, point.step_in_epoch, digest)
    seen = all_gather_object((node_name(), signature), context)
    if len({sig for _, sig in seen}) == 1:
        return None
    by_node = {}
    for node, (epoch, step, fingerprint) in seen:
        by_node.setdefault(
            node, f"epoch {epoch} step {step} of {fingerprint}" if fingerprint else "no checkpoint to resume"
        )
    views = "; ".join(f"{node}: {view}" for node, view in by_node.items())
    return f"the nodes disagree on the resume point of {path} (node-local disks?): {views}; copy one checkpoint to all"
