"""Fashion-MNIST (Zalando, MIT licence) from Debian's ``dataset-fashion-mnist``, written in ImageNet's layout.

The package installs four gzip-compressed IDX files (60,000 train / 10,000 test images,
28x28 grayscale, 10 classes) under :data:`DEBIAN_DIR`. :func:`write_fashion_mnist` picks
``train_per_class`` images of each class from the training file and ``val_per_class`` from
the test file (a seeded choice: the same seed, the same images), resizes them to
``image_size`` and writes them as RGB PNGs (lossless, byte-identical for the same inputs)::

    train/0_t-shirt_top/train_00017.png ... val/9_ankle_boot/test_09981.png

Class folders start with the label, so their sorted order is Fashion-MNIST's label order.
Nothing is installed here: missing files raise :class:`DataError` naming the apt package.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lambda_repro.data.errors import DataError
from lambda_repro.data.idx import read_idx

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # where the Debian package puts the files
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SOURCE_PREFIX = {"train": "train", "val": "test"}
LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DATASET_NAME = "Fashion-MNIST"


@dataclass(frozen=True)
class FashionMnistSpec:
    """The ``data.fashion_mnist`` parameters."""

    train_per_class: int = 300
    val_per_class: int = 100
    image_size: int = 32
    path: str = DEBIAN_DIR

    def validate(self) -> None:
        limits = {"train_per_class": 6000, "val_per_class": 1000}  # per class in the train / test files
        for name, limit in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
                raise DataError(f"data.fashion_mnist.{name} must be an integer in 1..{limit}, got {value!r}")
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 8:
            raise DataError(f"data.fashion_mnist.image_size must be an integer >= 8, got {self.image_size!r}")


def class_folder_names() -> list[str]:
    """``0_t-shirt_top``, ``1_trouser``, ...: sorted order is label order."""
    return [f"{k}_{name.lower().replace('/', '_').replace(' ', '_')}" for k, name in enumerate(LABELS)]


def missing_files(path: str) -> list[str]:
    return [
        os.path.join(path, name)
        for pair in FILES.values()
        for name in pair
        if not os.path.isfile(os.path.join(path, name))
    ]


def check_available(path: str) -> None:
    """Raise :class:`DataError` (one line, naming the apt package) unless all four IDX files are in ``path``."""
    missing = missing_files(path)
    if missing:
        where = "" if path == DEBIAN_DIR else " (or point data.fashion_mnist.path at the folder that holds them)"
        raise DataError(
            f"Fashion-MNIST not found: {missing[0]} is missing; install it with: "
            f"apt-get install {DEBIAN_PACKAGE}{where}",
            missing,
        )


def load_split(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of ``split`` (``train`` or ``val`` = the test file)."""
    check_available(path)
    images_file, labels_file = (os.path.join(path, name) for name in FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_file}: shape {images.shape} does not match {labels_file}: shape {labels.shape}")
    return images, labels


def choose(labels: np.ndarray, per_class: int, seed: int, stream: int) -> list[int]:
    """``per_class`` indices of every class, drawn without replacement by a seeded generator, in file order."""
    rng = np.random.default_rng([seed, stream])
    chosen = []
    for label in range(len(LABELS)):
        candidates = np.flatnonzero(labels == label)
        if len(candidates) < per_class:
            raise DataError(f"Fashion-MNIST has {len(candidates)} images of class {label}, fewer than {per_class}")
        chosen.extend(int(i) for i in np.sort(rng.choice(candidates, size=per_class, replace=False)))
    return sorted(chosen)


def encode_png(pixels: np.ndarray, image_size: int) -> bytes:
    image = Image.fromarray(pixels, mode="L")
    if image_size != pixels.shape[0]:
        image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def write_fashion_mnist(output: str | os.PathLike, spec: FashionMnistSpec, seed: int) -> str:
    """Write the chosen images under ``output`` (which must not exist); returns the sha256 of names and bytes."""
    spec.validate()
    if os.path.exists(output):
        raise DataError(f"{output} already exists; Fashion-MNIST is written to a fresh directory")
    folders = class_folder_names()
    digest = hashlib.sha256()
    for stream, split in enumerate(("train", "val")):
        images, labels = load_split(spec.path, split)
        per_class = spec.train_per_class if split == "train" else spec.val_per_class
        for folder in folders:
            os.makedirs(os.path.join(output, split, folder))
        for index in choose(labels, per_class, seed, stream):
            relative = os.path.join(split, folders[labels[index]], f"{_SOURCE_PREFIX[split]}_{index:05d}.png")
            data = encode_png(images[index], spec.image_size)
            with open(os.path.join(output, relative), "wb") as f:
                f.write(data)
            digest.update(relative.encode() + b"\0" + data)
    return digest.hexdigest()
