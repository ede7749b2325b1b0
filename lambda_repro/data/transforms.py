"""Image transforms of the published recipe (torchvision's ImageNet reference).

Train: RandomResizedCrop + horizontal flip. Eval: resize the short side to 256/224 of the crop,
then center crop. The ratio is kept at other resolutions, so the 64-pixel embedded run
resizes to 73 exactly as 224 resizes to 256.
"""

from __future__ import annotations

from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_resize_size(image_size: int) -> int:
    """Short side to resize to before the center crop: 256 at 224, scaled for other sizes."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return round(image_size * 256 / 224)


def _to_normalized_tensor() -> list:
    return [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(image_size: int) -> transforms.Compose:
    """RandomResizedCrop(image_size) + RandomHorizontalFlip + ToTensor + ImageNet normalisation."""
    return transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), *_to_normalized_tensor()]
    )


def eval_transform(image_size: int, resize_size: int | None = None) -> transforms.Compose:
    """Resize(resize_size, default eval_resize_size(image_size)) + CenterCrop(image_size) + ToTensor + normalisation."""
    return transforms.Compose(
        [
            transforms.Resize(resize_size or eval_resize_size(image_size)),
            transforms.CenterCrop(image_size),
            *_to_normalized_tensor(),
        ]
    )
