"""The shapes the 16 lambda layers of Lambda-ResNet-50 run at, for a 224x224 input.

A stride-2 block runs its lambda layer on the block's input map and pools after it, so the
first block of stages 2-4 sees the previous stage's (larger) map.
"""

from __future__ import annotations

# (channels, stride, map side at the layer's input, how many of the 16 layers share it)
LAMBDA_RESNET50_LAYER_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (64, 1, 56, 3),
    (128, 2, 56, 1),
    (128, 1, 28, 3),
    (256, 2, 28, 1),
    (256, 1, 14, 5),
    (512, 2, 14, 1),
    (512, 1, 7, 2),
)
