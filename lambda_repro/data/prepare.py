"""The prepare step: generate the embedded dataset or verify ImageNet, and write the manifest.

The synthetic dataset is written to a temporary sibling of ``output`` and swapped in
whole, so an interrupted run never leaves a half-written dataset behind. ``output`` is only
ever replaced if ``prepare`` wrote it (its README.txt says so) or it is empty: a
user's own files there are an error, never deleted. With ImageNet nothing is copied:
``output`` holds only a README.txt (DVC wants every declared output to exist) and the
manifest points at ``root`` in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lambda_repro.data.errors import DataError
from lambda_repro.data.manifest import write_manifest
from lambda_repro.data.synthetic import SyntheticSpec, generate_synthetic
from lambda_repro.data.verify import IMAGENET_COUNTS, ExpectedCounts, verify_tree

MARKER = "Written by lambda-repro's prepare stage."
SYNTHETIC_IMAGE_SIZE = 64  # the crop the embedded dataset is made for (its sides are 48..96 by default)
IMAGENET_IMAGE_SIZE = 224


def _is_ours(path: Path) -> bool:
    readme = path / "README.txt"
    if readme.is_file():
        return readme.read_text(encoding="utf-8", errors="replace").startswith(MARKER)
    return not any(path.iterdir())


def _install(new: Path, output: Path) -> None:
    """Replace ``output`` by ``new`` (a directory beside it), refusing to delete anything prepare did not write."""
    if output.exists():
        if not output.is_dir() or not _is_ours(output):
            raise DataError(
                f"{output} exists and was not written by prepare; move it away or choose another data.output"
            )
        old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
        os.replace(output, old / output.name)
        os.replace(new, output)
        shutil.rmtree(old)
    else:
        os.replace(new, output)


def _staging_dir(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.new-"))


def prepare_synthetic(output: str, manifest_path: str, spec: SyntheticSpec, seed: int, verify: str = "full") -> dict:
    """Generate the embedded dataset into ``output``, verify it like ImageNet, write and return the manifest."""
    output_path = Path(output)
    staging = _staging_dir(output_path)
    try:
        content_digest = generate_synthetic(staging / "tree", spec, seed)
        (staging / "tree" / "README.txt").write_text(
            f"{MARKER}\nThe embedded synthetic dataset (seed {seed}, {spec}). Regenerate with: dvc repro prepare\n",
            encoding="utf-8",
        )
        _install(staging / "tree", output_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    expected = ExpectedCounts(spec.classes, spec.classes * spec.train_per_class, spec.classes * spec.val_per_class)
    manifest = verify_tree(
        output, kind="synthetic", verify=verify, expected=expected, workers=1, image_size=SYNTHETIC_IMAGE_SIZE
    )
    manifest["fingerprint"] = content_digest  # names and bytes: changes whenever any pixel does
    write_manifest(manifest, manifest_path)
    return manifest


def prepare_imagenet(
    root: str,
    output: str,
    manifest_path: str,
    *,
    verify: str = "full",
    skip_undecodable: bool = False,
    expect_full_imagenet: bool = True,
    workers: int | None = None,
) -> dict:
    """Verify an ImageNet tree in place (nothing copied), write and return the manifest."""
    manifest = verify_tree(
        root,
        kind="imagenet",
        verify=verify,
        skip_undecodable=skip_undecodable,
        expected=IMAGENET_COUNTS if expect_full_imagenet else None,
        workers=workers,
        image_size=IMAGENET_IMAGE_SIZE,
    )
    output_path = Path(output)
    staging = _staging_dir(output_path)
    try:
        (staging / "tree").mkdir()
        (staging / "tree" / "README.txt").write_text(
            f"{MARKER}\nImageNet is used in place, nothing is copied here: see the manifest ({manifest_path}).\n",
            encoding="utf-8",
        )
        _install(staging / "tree", output_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(manifest, manifest_path)
    return manifest
