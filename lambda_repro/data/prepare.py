"""The prepare step: generate the embedded dataset, write Fashion-MNIST, or verify a tree; write the manifest.

The synthetic dataset is written to a temporary sibling of ``output`` and swapped in
whole, so an interrupted run never leaves a half-written dataset behind. ``output`` is only
ever replaced if ``prepare`` wrote it (its README.txt says so) or it is empty: a
user's own files there are an error, never deleted. With ImageNet nothing is copied:
``output`` holds only a README.txt (DVC wants every declared output to exist) and the
manifest points at ``root`` in place. Such a tree is of kind ``imagenet`` when every class
folder is a WordNet id (``n01440764``: ImageNet or a subset of it), else ``imagefolder``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from lambda_repro.data.errors import DataError
from lambda_repro.data.fashion_mnist import DATASET_NAME, FashionMnistSpec, check_available, write_fashion_mnist
from lambda_repro.data.manifest import write_manifest
from lambda_repro.data.synthetic import SyntheticSpec, generate_synthetic
from lambda_repro.data.verify import IMAGENET_COUNTS, ExpectedCounts, verify_tree

MARKER = "Written by lambda-repro's prepare stage."
SYNTHETIC_IMAGE_SIZE = 64  # the crop the embedded dataset is made for (its sides are 48..96 by default)
IMAGENET_IMAGE_SIZE = 224
_WNID = re.compile(r"n\d{8}")


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


def _write_generated(output: str, write, description: str) -> str:
    """Run ``write(tree)`` into a staging folder and swap it in as ``output``; returns its content digest."""
    output_path = Path(output)
    staging = _staging_dir(output_path)
    try:
        content_digest = write(staging / "tree")
        (staging / "tree" / "README.txt").write_text(
            f"{MARKER}\n{description} Regenerate with: dvc repro prepare\n", encoding="utf-8"
        )
        _install(staging / "tree", output_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return content_digest


def prepare_synthetic(output: str, manifest_path: str, spec: SyntheticSpec, seed: int, verify: str = "full") -> dict:
    """Generate the embedded dataset into ``output``, verify it like ImageNet, write and return the manifest."""
    content_digest = _write_generated(
        output,
        lambda tree: generate_synthetic(tree, spec, seed),
        f"The embedded synthetic dataset (seed {seed}, {spec}).",
    )
    expected = ExpectedCounts(spec.classes, spec.classes * spec.train_per_class, spec.classes * spec.val_per_class)
    manifest = verify_tree(
        output, kind="synthetic", verify=verify, expected=expected, workers=1, image_size=SYNTHETIC_IMAGE_SIZE
    )
    manifest["name"] = "synthetic"
    manifest["fingerprint"] = content_digest  # names and bytes: changes whenever any pixel does
    write_manifest(manifest, manifest_path)
    return manifest


def prepare_fashion_mnist(
    output: str, manifest_path: str, spec: FashionMnistSpec, seed: int, verify: str = "full"
) -> dict:
    """Write Fashion-MNIST (from the Debian package's IDX files) into ``output`` in ImageNet's layout.

    Fails before writing anything, naming the apt package, when the IDX files are missing.
    """
    spec.validate()
    check_available(spec.path)
    content_digest = _write_generated(
        output,
        lambda tree: write_fashion_mnist(tree, spec, seed),
        f"Fashion-MNIST from {spec.path} (seed {seed}, {spec}).",
    )
    classes = 10
    expected = ExpectedCounts(classes, classes * spec.train_per_class, classes * spec.val_per_class)
    manifest = verify_tree(
        output, kind="fashion_mnist", verify=verify, expected=expected, workers=1, image_size=spec.image_size
    )
    manifest["name"] = DATASET_NAME
    manifest["fingerprint"] = content_digest
    write_manifest(manifest, manifest_path)
    return manifest


def tree_kind(classes: list[str]) -> str:
    """``imagenet`` when every class folder is a WordNet id, else ``imagefolder``."""
    return "imagenet" if all(_WNID.fullmatch(name) for name in classes) else "imagefolder"


def prepare_imagenet(
    root: str,
    output: str,
    manifest_path: str,
    *,
    verify: str = "full",
    skip_undecodable: bool = False,
    expect_full_imagenet: bool = True,
    workers: int | None = None,
    name: str | None = None,
) -> dict:
    """Verify a tree in ImageNet's layout in place (nothing copied), write and return the manifest.

    ``expect_full_imagenet`` also checks ImageNet's class and image counts; ``kind`` and ``name``
    say whether the tree is ImageNet (see :func:`tree_kind`); ``name`` overrides the name.
    """
    manifest = verify_tree(
        root,
        verify=verify,
        skip_undecodable=skip_undecodable,
        expected=IMAGENET_COUNTS if expect_full_imagenet else None,
        workers=workers,
        image_size=IMAGENET_IMAGE_SIZE,
    )
    manifest["kind"] = tree_kind(manifest["classes"])
    manifest["name"] = name or (
        "ImageNet" if manifest["kind"] == "imagenet" else os.path.basename(os.path.normpath(root))
    )
    output_path = Path(output)
    staging = _staging_dir(output_path)
    try:
        (staging / "tree").mkdir()
        (staging / "tree" / "README.txt").write_text(
            f"{MARKER}\nThe dataset is used in place, nothing is copied here: see the manifest ({manifest_path}).\n",
            encoding="utf-8",
        )
        _install(staging / "tree", output_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(manifest, manifest_path)
    return manifest
