"""The embedded dataset: a small, learnable, deterministic stand-in for ImageNet.

Every class is one combination of a *texture* (horizontal stripes, vertical stripes,
checkerboard, diagonal stripes, dots; as many as needed) and a *colour family* (the hue of
the pattern): at 10 classes, 2 textures x 5 colours. Both cues cover the whole image, so
they survive RandomResizedCrop and horizontal flips (diagonal stripes lean either way
within a class). Each image draws its own size, stripe period, phase,
hue jitter, background colour, brightness, occluding blobs and pixel noise, so the task is
learnable but not trivial: neither colour nor texture alone separates the classes.

Images are JPEGs of varied sizes in ImageNet's layout (``train/<wnid>/<wnid>_<i>.JPEG``,
``val/<wnid>/synthetic_val_<i>.JPEG``), with wnid-like class names ``n00000000``, ... .
Output is byte-identical for the same seed and parameters (fixed JPEG quality and chroma
subsampling, a random stream per image).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

from lambda_repro.data.errors import DataError

TEXTURES = ("horizontal_stripes", "vertical_stripes", "checkerboard", "diagonal_stripes", "dots")
JPEG_OPTIONS = {"format": "JPEG", "quality": 90, "subsampling": 0, "optimize": False, "progressive": False}
_SPLIT_STREAM = {"train": 0, "val": 1}


@dataclass(frozen=True)
class SyntheticSpec:
    """The ``data.synthetic`` parameters."""

    classes: int = 10
    train_per_class: int = 64
    val_per_class: int = 16
    min_size: int = 48
    max_size: int = 96

    def validate(self) -> None:
        for name in ("classes", "train_per_class", "val_per_class", "min_size", "max_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"data.synthetic.{name} must be a positive integer, got {value!r}")
        if self.classes < 2:
            raise DataError(f"data.synthetic.classes must be at least 2, got {self.classes}")
        if self.min_size < 16 or self.min_size > self.max_size:
            raise DataError(
                f"data.synthetic.min_size / max_size must satisfy 16 <= min_size <= max_size, "
                f"got {self.min_size} / {self.max_size}"
            )


def class_names(count: int) -> list[str]:
    """wnid-like names, sorted in label order: n00000000, n00000001, ..."""
    return [f"n{k:08d}" for k in range(count)]


def cue_counts(classes: int) -> tuple[int, int]:
    """How many textures and colour families ``classes`` classes use (textures x families >= classes).

    Few textures, more colour families: colour is the cue a deep network picks up in its first
    steps, so at 10 classes (2 textures x 5 colours) colour alone reaches 50% and texture the rest.
    """
    textures = min(len(TEXTURES), -(-classes // 5))
    return textures, -(-classes // textures)


def class_cues(label: int, classes: int) -> tuple[str, float]:
    """The texture and the base hue (0..1) of a class; the families' hues are evenly spaced."""
    textures, families = cue_counts(classes)
    return TEXTURES[label % textures], (label // textures) / families


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def _texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Pattern strength in [0, 1] over the image."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frequency = 1.0 / rng.uniform(7.0, 14.0)  # period in pixels
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "horizontal_stripes":
        wave = np.sin(2 * np.pi * frequency * y + phase)
    elif kind == "vertical_stripes":
        wave = np.sin(2 * np.pi * frequency * x + phase)
    elif kind == "diagonal_stripes":
        wave = np.sin(2 * np.pi * frequency * (x + rng.choice([-1.0, 1.0]) * y) / np.sqrt(2) + phase)
    elif kind == "checkerboard":
        wave = np.sin(2 * np.pi * frequency * x + phase) * np.sin(2 * np.pi * frequency * y + rng.uniform(0, 6.3))
        wave = 2.0 * wave  # product of two sines peaks at 1: widen so cells are as sharp as stripes
    elif kind == "dots":
        wave = np.cos(2 * np.pi * frequency * x + phase) + np.cos(2 * np.pi * frequency * y + rng.uniform(0, 6.3))
        wave = 2.0 * (wave - 1.0)  # positive only near the grid points: round dots on background
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.clip(0.5 + 1.5 * wave, 0.0, 1.0)


def render_image(label: int, classes: int, spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """One image of class ``label`` as HxWx3 uint8."""
    height, width = (int(v) for v in rng.integers(spec.min_size, spec.max_size + 1, size=2))
    texture, hue = class_cues(label, classes)
    hue_jitter = 0.3 / cue_counts(classes)[1]  # up to 60% of the gap between neighbouring families' hues
    foreground = _hsv(hue + rng.uniform(-hue_jitter, hue_jitter), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    background = _hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.45))
    strength = _texture(texture, height, width, rng)[..., None]
    image = strength * foreground + (1.0 - strength) * background
    # Occluding blobs of random colour: the cue must be read from what remains.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
        image[inside] = rng.uniform(0.0, 1.0, size=3)
    image = image * rng.uniform(0.75, 1.2) + rng.normal(0.0, 0.06, size=image.shape)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, **JPEG_OPTIONS)
    return buffer.getvalue()


def generate_synthetic(output: str | os.PathLike, spec: SyntheticSpec, seed: int) -> str:
    """Write the dataset under ``output`` (which must not exist); returns the sha256 of every file's name and bytes."""
    spec.validate()
    if os.path.exists(output):
        raise DataError(f"{output} already exists; the synthetic dataset is written to a fresh directory")
    names = class_names(spec.classes)
    digest = hashlib.sha256()
    jobs = [
        (split, label, i)
        for split in ("train", "val")
        for label in range(spec.classes)
        for i in range(spec.train_per_class if split == "train" else spec.val_per_class)
    ]
    for split, label, i in tqdm(jobs, desc="generate synthetic dataset", unit="img", leave=False):
        # One random stream per image: any image can be regenerated alone, identically.
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], label, i])
        data = encode_jpeg(render_image(label, spec.classes, spec, rng))
        wnid = names[label]
        file_name = (
            f"{wnid}_{i}.JPEG" if split == "train" else f"synthetic_val_{label * spec.val_per_class + i:08d}.JPEG"
        )
        relative = os.path.join(split, wnid, file_name)
        os.makedirs(os.path.join(output, split, wnid), exist_ok=True)
        with open(os.path.join(output, relative), "wb") as f:
            f.write(data)
        digest.update(relative.encode() + b"\0" + data)
    return digest.hexdigest()
