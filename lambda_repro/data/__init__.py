"""Data: the embedded synthetic dataset, ImageNet verification, the manifest, datasets and transforms.

What training and evaluation use::

    from lambda_repro.data import load_manifest, build_dataset, train_transform, eval_transform

    manifest = load_manifest("data/manifest.json")
    train_set = build_dataset(manifest, "train", train_transform(64))
    val_set = build_dataset(manifest, "val", eval_transform(64))
"""

from lambda_repro.data.dataset import ImageFolderSplit, build_dataset
from lambda_repro.data.errors import DataError
from lambda_repro.data.images import open_rgb
from lambda_repro.data.manifest import load_manifest, write_manifest
from lambda_repro.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size, eval_transform, train_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataError",
    "ImageFolderSplit",
    "build_dataset",
    "eval_resize_size",
    "eval_transform",
    "load_manifest",
    "open_rgb",
    "train_transform",
    "write_manifest",
]
