"""Listing a split in ImageNet's folder layout: ``<split>/<wnid>/<image files>``.

Only names are listed (``os.scandir``, no decoding), so listing ImageNet's 1.28M training
files takes seconds on a local disk. Entries that are not image files are returned
separately, so they can be reported rather than silently dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lambda_repro.data.errors import DataError
from lambda_repro.data.images import is_image_name


@dataclass
class SplitListing:
    """The image files of one split, per class folder (both sorted), and the entries that are not images."""

    path: str
    files: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(len(names) for names in self.files.values())


def list_split(split_path: str) -> SplitListing:
    """List ``split_path/<class>/<file>``; raises :class:`DataError` if the folder is missing or flat."""
    if not os.path.isdir(split_path):
        raise DataError(f"missing split: {split_path} is not a directory")
    listing = SplitListing(split_path)
    loose_images = []
    with os.scandir(split_path) as entries:
        for entry in entries:
            if entry.is_dir():
                listing.files[entry.name] = []
            elif is_image_name(entry.name):
                loose_images.append(entry.path)
            else:
                listing.ignored.append(entry.path)
    if loose_images and not listing.files:
        raise DataError(
            f"{split_path} holds {len(loose_images)} images directly, not in <wnid>/ class folders "
            "(ImageNet's val must be sorted into class folders first, e.g. with the usual valprep.sh)"
        )
    listing.ignored.extend(loose_images)
    for class_name in listing.files:
        class_path = os.path.join(split_path, class_name)
        with os.scandir(class_path) as entries:
            for entry in entries:
                if entry.is_file() and is_image_name(entry.name):
                    listing.files[class_name].append(entry.name)
                else:
                    listing.ignored.append(entry.path)
    listing.files = {name: sorted(listing.files[name]) for name in sorted(listing.files)}
    listing.ignored.sort()
    return listing
