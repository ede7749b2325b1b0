"""What validate and predict share: the checkpoint, the device and the eval transform's sizes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lambda_repro.commands.errors import CommandError
from lambda_repro.data import eval_resize_size, eval_transform
from lambda_repro.models import model_from_checkpoint


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="our checkpoint (e.g. checkpoints/last.pt), the published one, or a state dict"
    )
    parser.add_argument("--img-size", type=int, default=224, help="center crop side in pixels (default: %(default)s)")
    parser.add_argument(
        "--resize", type=int, default=None, help="short side before the crop (default: img-size x 256/224, e.g. 256)"
    )
    parser.add_argument("--arch", default=None, help="model name, for a file that records none (a bare state dict)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when there is one)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: %(default)s)")


def transform_from_args(args: argparse.Namespace):
    if args.img_size < 8:
        raise CommandError(f"--img-size must be at least 8, got {args.img_size}")
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    resize = args.resize or eval_resize_size(args.img_size)
    if resize < args.img_size:
        raise CommandError(f"--resize {resize} is smaller than the crop --img-size {args.img_size}")
    return eval_transform(args.img_size, resize), resize


def load_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """``model_from_checkpoint`` on ``args.checkpoint``, in eval mode on ``device``."""
    if not Path(args.checkpoint).is_file():
        raise CommandError(f"checkpoint not found: {args.checkpoint}")
    model, checkpoint = model_from_checkpoint(args.checkpoint, arch=args.arch)
    return model.to(device).eval(), checkpoint
