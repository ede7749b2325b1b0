"""``lambda-repro predict CHECKPOINT IMAGE...``: the top-5 labels of each image file, with probabilities.

Labels are the checkpoint's recorded class names; for a checkpoint without names (the
published one) give ``--labels`` (one name per line, in label order, e.g. the sorted
ImageNet wnids), else the class indices are shown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from lambda_repro.commands.checkpoint_inputs import add_checkpoint_options, load_model, transform_from_args
from lambda_repro.commands.devices import resolve_device
from lambda_repro.commands.errors import CommandError
from lambda_repro.data import open_rgb


def read_images(paths: list[str], transform) -> torch.Tensor:
    """All images, transformed and stacked; the first missing or undecodable file is a :class:`CommandError`."""
    tensors = []
    for path in paths:
        if not Path(path).is_file():
            raise CommandError(f"image not found: {path}")
        try:
            image = open_rgb(path)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise CommandError(f"{path} is not an image that can be decoded ({type(err).__name__})") from None
        tensors.append(transform(image))
    return torch.stack(tensors)


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, labels: list[str], *, top_k: int = 5, batch_size: int = 32
) -> list[list[tuple[str, float]]]:
    """For each image, its ``top_k`` (label, probability) pairs, most probable first."""
    device = next(model.parameters()).device
    results = []
    batches = range(0, len(images), batch_size)
    for start in tqdm(batches, desc="predict", disable=len(batches) < 2, leave=False):
        probabilities = model(images[start : start + batch_size].to(device)).float().softmax(dim=1)
        top = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            results.append([(labels[i], p) for i, p in zip(indices, values, strict=True)])
    return results


def label_names(checkpoint: dict, labels_file: str | None, num_classes: int) -> list[str]:
    if labels_file is not None:
        path = Path(labels_file)
        if not path.is_file():
            raise CommandError(f"labels file not found: {labels_file}")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) != num_classes:
            raise CommandError(f"{labels_file} has {len(names)} labels but the checkpoint has {num_classes} classes")
        return names
    classes = checkpoint.get("classes")
    return [str(name) for name in classes] if classes is not None else [str(i) for i in range(num_classes)]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict",
        help="top-5 labels with probabilities for image files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint_options(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per image (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="a text file of class names, one per line, in label order")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    transform, _ = transform_from_args(args)
    images = read_images(args.images, transform)  # bad files fail before the model is built
    device = resolve_device(args.device)
    model, checkpoint = load_model(args, device)
    labels = label_names(checkpoint, args.labels, int(checkpoint["state_dict"]["fc.weight"].shape[0]))
    predictions = predict(model, images, labels, top_k=args.top_k, batch_size=args.batch_size)
    for path, top in zip(args.images, predictions, strict=True):
        if args.json:
            print(json.dumps({"image": path, "top": [{"label": name, "probability": p} for name, p in top]}))
            continue
        print(path)
        for rank, (name, p) in enumerate(top, start=1):
            print(f"  {rank}. {name:<24} {100 * p:6.2f} %")
    return 0
