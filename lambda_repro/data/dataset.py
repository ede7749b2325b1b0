"""The image dataset training and evaluation load: a split of the manifest's tree, as (tensor, label).

The split's folder is listed when the dataset is built (names only, no decoding; seconds
for ImageNet's 1.28M files), and the count is checked against the manifest, so a tree that
changed since ``prepare`` is an error rather than a silent mismatch. Paths and labels are
kept in two numpy arrays rather than a list of Python strings: DataLoader workers then
share them without copy-on-access growth, and the dataset pickles small.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset

from lambda_repro.data.errors import DataError
from lambda_repro.data.images import open_rgb
from lambda_repro.data.layout import list_split
from lambda_repro.data.manifest import SPLITS, skipped_paths


class ImageFolderSplit(Dataset):
    """Images under ``split_path/<class>/``, labelled by the index of their class in ``classes``."""

    def __init__(self, split_path: str, relative_paths: np.ndarray, labels: np.ndarray, transform: Callable | None):
        self.split_path = split_path
        self.relative_paths = relative_paths
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> str:
        return os.path.join(self.split_path, self.relative_paths[index].decode())

    def __getitem__(self, index: int):
        path = self.path(index)
        try:
            image = open_rgb(path)
        except Exception as err:  # noqa: BLE001  (name the file: the bare PIL error does not)
            raise DataError(
                f"cannot decode {path}: {err} (prepare with data.verify: full to find every such file)"
            ) from err
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def build_dataset(manifest: dict, split: str, transform: Callable | None) -> ImageFolderSplit:
    """The ``train`` or ``val`` split of a (validated) manifest, yielding ``(transform(image), label)``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    split_path = manifest["splits"][split]["path"]
    class_index = {name: i for i, name in enumerate(manifest["classes"])}
    listing = list_split(split_path)
    unknown = sorted(set(listing.files) - set(class_index))
    if unknown:
        raise DataError(
            f"{split_path} has class folders not in the manifest: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; rerun the prepare stage"
        )
    skipped = skipped_paths(manifest)
    relative_paths, labels = [], []
    for class_name, names in listing.files.items():
        for name in names:
            relative = os.path.join(class_name, name)
            if os.path.join(split_path, relative) in skipped:
                continue
            relative_paths.append(relative.encode())
            labels.append(class_index[class_name])
    expected = manifest["splits"][split]["images"]
    if len(labels) != expected:
        raise DataError(
            f"{split_path}: the manifest lists {expected} usable images but {len(labels)} are there now; "
            "the data changed since prepare, rerun it (dvc repro prepare)"
        )
    label_dtype = np.int16 if len(class_index) < 2**15 else np.int32
    return ImageFolderSplit(split_path, np.array(relative_paths, dtype=bytes), np.array(labels, label_dtype), transform)
