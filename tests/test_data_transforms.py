"""The published recipe's transforms: sizes, normalisation, and the 256/224 resize ratio."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lambda_repro.data import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size, eval_transform, train_transform


@pytest.mark.parametrize(("size", "resize"), [(224, 256), (64, 73), (128, 146), (32, 37)])
def test_eval_resize_keeps_the_256_over_224_ratio(size, resize):
    assert eval_resize_size(size) == resize


def test_eval_resize_rejects_nonpositive_size():
    with pytest.raises(ValueError, match="image_size"):
        eval_resize_size(0)


def test_eval_transform_center_crops_the_resized_image():
    # 150x100 (w x h): short side -> 73, so 110x73, then the central 64x64.
    left_red_right_blue = Image.new("RGB", (150, 100), (0, 0, 255))
    left_red_right_blue.paste((255, 0, 0), (0, 0, 75, 100))
    out = eval_transform(64)(left_red_right_blue)
    assert out.shape == (3, 64, 64)
    red_channel = out[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert red_channel[:, :30].min() > 0.95 and red_channel[:, 34:].max() < 0.05


def test_eval_transform_normalises_with_imagenet_statistics():
    mean_colour = tuple(round(m * 255) for m in IMAGENET_MEAN)
    out = eval_transform(32)(Image.new("RGB", (40, 40), mean_colour))
    assert out.abs().max() < 0.01


def test_train_transform_crops_to_size_and_varies_between_calls():
    torch.manual_seed(0)
    image = Image.effect_noise((90, 60), 64).convert("RGB")
    first, second = train_transform(48)(image), train_transform(48)(image)
    assert first.shape == second.shape == (3, 48, 48)
    assert not torch.equal(first, second)
