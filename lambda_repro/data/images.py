"""Opening one image file, and inspecting it for problems without training on it.

ImageNet holds a few odd files: CMYK and grayscale JPEGs, and a PNG named ``.JPEG``. They
decode fine and are converted to RGB; they are reported, not dropped. A file that does not
decode at all (zero bytes, truncated, corrupt) is reported as undecodable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image

# File names the dataset loads (case-insensitive); ImageNet's are all ".JPEG".
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
VERIFY_MODES = ("full", "header", "none")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully and return it as RGB (CMYK, grayscale, palette, RGBA converted)."""
    with open(path, "rb") as f:
        image = Image.open(f)
        # convert() decodes the whole file while it is still open, so a truncated one raises here.
        return image.convert("RGB")


@dataclass(frozen=True)
class Inspection:
    """What inspecting one file found. ``problem`` is None for a plain RGB image in the format its name says."""

    path: str
    size_bytes: int
    problem: str | None = None
    decodable: bool = True


def inspect_image(path: str, mode: str = "full") -> Inspection:
    """Inspect one file: ``full`` decodes every pixel, ``header`` reads the header only, ``none`` only stats it.

    ``header`` catches zero-byte files, non-images and wrong formats, but not a JPEG truncated
    after its header: that one fails later, when training opens it (naming the path).
    """
    if mode not in VERIFY_MODES:
        raise ValueError(f"unknown verify mode {mode!r}; expected one of {', '.join(VERIFY_MODES)}")
    try:
        size = os.path.getsize(path)
    except OSError as err:
        return Inspection(path, 0, f"unreadable: {err.strerror or err}", decodable=False)
    if size == 0:
        return Inspection(path, 0, "empty file (0 bytes)", decodable=False)
    if mode == "none":
        return Inspection(path, size)
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image_format, image_mode = image.format, image.mode
            if mode == "full":
                image.convert("RGB")
            else:
                image.verify()
    except Exception as err:  # noqa: BLE001  (PIL raises many types for broken files; all mean "undecodable")
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return Inspection(path, size, f"undecodable: {reason}", decodable=False)
    oddities = []
    expected_format = "PNG" if path.lower().endswith(".png") else "JPEG"
    if image_format != expected_format:
        oddities.append(f"{image_format} data in a file named {os.path.splitext(path)[1]}")
    if image_mode != "RGB":
        oddities.append(f"{image_mode} colour mode")
    if oddities:
        return Inspection(path, size, "; ".join(oddities) + " (converted to RGB when loaded)")
    return Inspection(path, size)
