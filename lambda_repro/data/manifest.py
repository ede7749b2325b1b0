"""``data/manifest.json``: what ``prepare`` found, and what training and evaluation load.

Format (docs/pipeline.md)::

    {"kind": "synthetic" | "fashion_mnist" | "imagenet" | "imagefolder", "name": "Fashion-MNIST",
     "root": "<dataset root>", "image_size": 64,
     "classes": ["n01440764", ...],
     "splits": {"train": {"images": 1000, "path": "<root>/train", "skipped": 0}, "val": {...}},
     "problems": [{"path": "<root>/train/<wnid>/<file>", "problem": "...", "action": "skipped"}],
     "fingerprint": "<sha256 of the listing>"}

``images`` counts the images a split loads (skipped files excluded). ``action`` is
``skipped`` (left out), ``converted`` (decodes, converted to RGB) or ``ignored`` (not an
image file). ``fingerprint`` changes whenever the files do, so stages that depend on the
manifest rerun when the data changes. ``kind`` says what the data is (``imagefolder``: a tree
in ImageNet's layout that is not ImageNet); ``name`` is what reports call it (manifests
written before it existed get :func:`dataset_name`'s default for their kind).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lambda_repro.data.errors import DataError

KINDS = ("synthetic", "fashion_mnist", "imagenet", "imagefolder")
DEFAULT_NAMES = {"synthetic": "synthetic", "fashion_mnist": "Fashion-MNIST", "imagenet": "ImageNet"}
SPLITS = ("train", "val")
ACTIONS = ("skipped", "converted", "ignored")


def validate_manifest(manifest: Any, source: str = "manifest") -> dict:
    """Check the manifest's structure; raises :class:`DataError` naming ``source`` and the bad key."""

    def fail(what: str) -> None:
        raise DataError(f"{source}: {what}; rerun the prepare stage (dvc repro prepare)")

    if not isinstance(manifest, dict):
        fail(f"expected a JSON object, found {type(manifest).__name__}")
    for key in ("kind", "root", "classes", "splits", "problems"):
        if key not in manifest:
            fail(f"missing key {key!r}")
    if manifest["kind"] not in KINDS:
        fail(f"'kind' is {manifest['kind']!r}, expected one of {', '.join(KINDS)}")
    if not isinstance(manifest.get("name", ""), str):
        fail("'name' must be a string")
    if not isinstance(manifest["root"], str):
        fail("'root' must be a path string")
    classes = manifest["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        fail("'classes' must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        fail("'classes' has duplicates")
    if classes != sorted(classes):
        fail("'classes' must be sorted (labels are indices into the sorted list)")
    splits = manifest["splits"]
    if not isinstance(splits, dict):
        fail("'splits' must be an object")
    for split in SPLITS:
        entry = splits.get(split)
        if not isinstance(entry, dict):
            fail(f"missing split {split!r}")
        if not isinstance(entry.get("path"), str):
            fail(f"splits.{split}.path must be a path string")
        images = entry.get("images")
        if not isinstance(images, int) or isinstance(images, bool) or images < 1:
            fail(f"splits.{split}.images must be a positive integer, found {images!r}")
    problems = manifest["problems"]
    if not isinstance(problems, list):
        fail("'problems' must be a list")
    for problem in problems:
        if not isinstance(problem, dict) or not isinstance(problem.get("path"), str) or "problem" not in problem:
            fail(f"every entry of 'problems' needs 'path' and 'problem', found {problem!r}")
        if problem.get("action", "skipped") not in ACTIONS:
            fail(f"problem action {problem.get('action')!r} is not one of {', '.join(ACTIONS)}")
    return manifest


def load_manifest(path: str | os.PathLike) -> dict:
    """Read and validate ``data/manifest.json``; raises :class:`DataError` if it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}; run the prepare stage first (dvc repro prepare)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); rerun the prepare stage (dvc repro prepare)") from None
    return validate_manifest(manifest, str(path))


def write_manifest(manifest: dict, path: str | os.PathLike) -> None:
    """Validate, then write atomically (a reader never sees half a manifest)."""
    path = Path(path)
    validate_manifest(manifest, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def skipped_paths(manifest: dict) -> set[str]:
    """Paths that prepare left out (undecodable files under ``skip_undecodable``)."""
    return {p["path"] for p in manifest["problems"] if p.get("action", "skipped") == "skipped"}


def dataset_name(manifest: dict) -> str:
    """What reports call the dataset: the manifest's ``name``, else a default for its kind (or its folder's name)."""
    name = manifest.get("name")
    if name:
        return name
    return DEFAULT_NAMES.get(manifest["kind"]) or os.path.basename(os.path.normpath(manifest["root"])) or "image folder"
