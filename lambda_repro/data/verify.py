"""Verifying a dataset tree in ImageNet's layout and describing it as a manifest.

Checks, cheapest first so a wrong tree fails in seconds: both splits exist; no class folder
is empty; train and val have the same classes; the counts match what is expected (ImageNet:
1000 classes, 1,281,167 train and 50,000 val images). Then every file is inspected in a
process pool (``verify``: ``full`` decodes every pixel, ``header`` reads headers only,
``none`` only stats). Decodable oddities are reported and loaded as RGB; undecodable files
fail the check with the full list, or are left out and listed when ``skip_undecodable``.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from lambda_repro.data.errors import DataError
from lambda_repro.data.images import VERIFY_MODES, Inspection, inspect_image
from lambda_repro.data.layout import SplitListing, list_split
from lambda_repro.data.manifest import SPLITS

# Messages list at most this many paths; DataError.details holds them all.
_MAX_LISTED = 10
# Below this many files a process pool costs more than it saves.
_POOL_THRESHOLD = 2000


@dataclass(frozen=True)
class ExpectedCounts:
    classes: int
    train: int
    val: int


IMAGENET_COUNTS = ExpectedCounts(classes=1000, train=1_281_167, val=50_000)


def _listed(paths: list[str]) -> str:
    shown = "; ".join(paths[:_MAX_LISTED])
    return shown + (f"; ... and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


def _check_classes(listings: dict[str, SplitListing]) -> list[str]:
    empty = [
        os.path.join(lst.path, name) for lst in listings.values() for name, files in lst.files.items() if not files
    ]
    if empty:
        raise DataError(f"{len(empty)} empty class folder(s): {_listed(empty)}", empty)
    train, val = set(listings["train"].files), set(listings["val"].files)
    if not train:
        raise DataError(f"{listings['train'].path} has no class folders")
    if train != val:
        only_train, only_val = sorted(train - val), sorted(val - train)
        parts = []
        if only_train:
            parts.append(f"{len(only_train)} missing from val ({', '.join(only_train[:_MAX_LISTED])})")
        if only_val:
            parts.append(f"{len(only_val)} in val but not in train ({', '.join(only_val[:_MAX_LISTED])})")
        raise DataError(
            f"val classes do not match train classes under {os.path.dirname(listings['val'].path)}: " + "; ".join(parts)
        )
    return sorted(train)


def _check_counts(classes: list[str], listings: dict[str, SplitListing], expected: ExpectedCounts) -> None:
    found = ExpectedCounts(len(classes), listings["train"].images, listings["val"].images)
    if found != expected:
        raise DataError(
            f"expected {expected.classes} classes / {expected.train:,} train / {expected.val:,} val images, "
            f"found {found.classes} / {found.train:,} / {found.val:,} under {os.path.dirname(listings['train'].path)} "
            "(set data.expect_full_imagenet: false to use a subset)"
        )


def _inspect_all(paths: list[str], mode: str, workers: int, desc: str) -> list[Inspection]:
    modes = [mode] * len(paths)
    progress = {"desc": desc, "total": len(paths), "unit": "img", "mininterval": 1.0}
    if workers <= 1 or len(paths) < _POOL_THRESHOLD:
        return list(tqdm(map(inspect_image, paths, modes), **progress))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(inspect_image, paths, modes, chunksize=256), **progress))


def verify_tree(
    root: str,
    *,
    kind: str = "imagenet",
    verify: str = "full",
    skip_undecodable: bool = False,
    expected: ExpectedCounts | None = None,
    workers: int | None = None,
    image_size: int = 224,
) -> dict:
    """Verify ``root/train`` and ``root/val``; returns the manifest (see :mod:`lambda_repro.data.manifest`)."""
    if verify not in VERIFY_MODES:
        raise DataError(f"data.verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    if not os.path.isdir(root):
        raise DataError(f"dataset root not found: {root} is not a directory (data.root)")
    listings = {split: list_split(os.path.join(root, split)) for split in SPLITS}
    classes = _check_classes(listings)
    if expected is not None:
        _check_counts(classes, listings, expected)

    problems = [
        {"path": path, "problem": "not an image file (only .JPEG/.jpg/.png are loaded)", "action": "ignored"}
        for split in SPLITS
        for path in listings[split].ignored
    ]
    workers = workers or os.cpu_count() or 1
    fingerprint = hashlib.sha256()
    splits, undecodable = {}, []
    for split in SPLITS:
        listing = listings[split]
        relative = [os.path.join(name, file) for name, files in listing.files.items() for file in files]
        paths = [os.path.join(listing.path, rel) for rel in relative]
        inspections = _inspect_all(paths, verify, workers, f"verify {split} ({verify})")
        skipped_per_class = dict.fromkeys(listing.files, 0)
        for rel, found in zip(relative, inspections, strict=True):
            fingerprint.update(f"{split}/{rel}\t{found.size_bytes}\n".encode())
            if found.problem is None:
                continue
            if found.decodable:
                problems.append({"path": found.path, "problem": found.problem, "action": "converted"})
            else:
                undecodable.append(f"{found.path}: {found.problem}")
                problems.append({"path": found.path, "problem": found.problem, "action": "skipped"})
                skipped_per_class[rel.split(os.sep, 1)[0]] += 1
        emptied = [os.path.join(listing.path, c) for c, n in skipped_per_class.items() if n == len(listing.files[c])]
        if skip_undecodable and emptied:
            raise DataError(f"no decodable image left in class folder(s): {_listed(emptied)}", emptied)
        skipped = sum(skipped_per_class.values())
        splits[split] = {"images": listing.images - skipped, "path": listing.path, "skipped": skipped}
    if undecodable and not skip_undecodable:
        raise DataError(
            f"{len(undecodable)} undecodable image(s) (set data.skip_undecodable: true to leave them out): "
            f"{_listed(undecodable)}",
            undecodable,
        )
    return {
        "kind": kind,
        "root": root,
        "image_size": image_size,
        "classes": classes,
        "splits": splits,
        "problems": problems,
        "verify": verify,
        "fingerprint": fingerprint.hexdigest(),
    }
