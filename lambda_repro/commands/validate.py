"""``lambda-repro validate CHECKPOINT DATA_DIR``: top-1 / top-5 of a checkpoint on a folder of class folders.

Like timm's ``validate.py``: no params.yaml edit, no DVC. Labels follow the checkpoint's
recorded class names, matched to the folder names; a checkpoint without names (the
published one) is taken to use the ImageNet convention, labels in sorted folder-name order.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from lambda_repro.commands.checkpoint_inputs import add_checkpoint_options, load_model, transform_from_args
from lambda_repro.commands.devices import resolve_device
from lambda_repro.commands.errors import CommandError
from lambda_repro.data import ImageFolderSplit
from lambda_repro.data.layout import SplitListing, list_split
from lambda_repro.evaluation import evaluate


def image_folder(data_dir: str) -> str:
    """The folder whose subfolders are the classes: ``data_dir``, or its ``val/`` for a ``train/ + val/`` tree."""
    if not os.path.isdir(data_dir):
        raise CommandError(f"data folder not found: {data_dir}")
    subfolders = {entry.name for entry in os.scandir(data_dir) if entry.is_dir()}
    if "val" in subfolders and subfolders <= {"train", "val", "test"}:
        return os.path.join(data_dir, "val")
    return data_dir


def labelled_images(listing: SplitListing, classes: list[str] | None, num_classes: int) -> tuple[list[str], dict]:
    """``(checkpoint class of each folder, {folder: label})``; raises :class:`CommandError` when they do not match."""
    folders = list(listing.files)
    if classes is None:  # the published convention: label i is the i-th class folder in sorted order
        if len(folders) != num_classes:
            raise CommandError(
                f"{listing.path} has {len(folders)} class folders but the checkpoint has {num_classes} outputs and "
                "records no class names to match them by"
            )
        return folders, {name: i for i, name in enumerate(folders)}
    index = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise CommandError(
            f"{len(unknown)} of the {len(folders)} class folders of {listing.path} are not classes of the checkpoint "
            f"(first: {', '.join(unknown[:3])}; the checkpoint's first: {', '.join(classes[:3])})"
        )
    return folders, {name: index[name] for name in folders}


def build_split(folder: str, labels: dict[str, int], listing: SplitListing, transform) -> ImageFolderSplit:
    paths = [os.path.join(name, file).encode() for name, files in listing.files.items() for file in files]
    targets = [labels[name] for name, files in listing.files.items() for _ in files]
    return ImageFolderSplit(folder, np.array(paths), np.array(targets, dtype=np.int64), transform)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate",
        help="top-1 / top-5 of a checkpoint on an image folder (no params edit)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint_options(parser)
    parser.add_argument(
        "data_dir",
        help="a folder of class folders (<class>/<image>), e.g. ImageNet's val; of a train/ + val/ tree, val/",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data loader processes")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    transform, resize = transform_from_args(args)
    folder = image_folder(args.data_dir)
    listing = list_split(folder)
    if not listing.files:
        raise CommandError(f"{folder} holds no class folders (<class>/<image>)")
    if listing.images == 0:
        raise CommandError(f"{folder}: the class folders hold no images (.JPEG, .jpg, .png)")
    device = resolve_device(args.device)
    model, checkpoint = load_model(args, device)
    num_classes = int(checkpoint["state_dict"]["fc.weight"].shape[0])
    classes = checkpoint.get("classes")
    folders, labels = labelled_images(listing, list(classes) if classes is not None else None, num_classes)
    dataset = build_split(folder, labels, listing, transform)
    result = evaluate(
        model, dataset, batch_size=args.batch_size, device=device, workers=args.workers, description="validate"
    )
    summary = {
        "checkpoint": args.checkpoint,
        "arch": checkpoint["arch"],
        "data": folder,
        "images": result["images"],
        "classes": len(folders),
        "top1": round(result["top1"], 3),
        "top5": round(result["top5"], 3),
        "loss": round(result["loss"], 4),
        "img_size": args.img_size,
        "resize": resize,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"validate: {summary['arch']} on {summary['images']:,} images of {len(folders)} classes in {folder} "
        f"(resize {resize}, crop {args.img_size}): top-1 {summary['top1']:.3f} %, top-5 {summary['top5']:.3f} %, "
        f"loss {summary['loss']:.4f}"
    )
    if classes is None:
        print("validate: the checkpoint records no class names; labels taken as the sorted folder names (ImageNet's)")
    return 0
