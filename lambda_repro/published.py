"""The published figures this suite reproduces (Lambda-ResNet-50 checkpoint and its table)."""

from __future__ import annotations

PUBLISHED_MODEL = "lambda_resnet50"
PUBLISHED_PARAMS = 14_995_848  # "14.995M"
PUBLISHED_MACS_224 = 6_575_505_408  # "6.576G FLOPs" in the table: really multiply-accumulates
PUBLISHED_TOP1 = 78.208
PUBLISHED_TOP5 = 93.820
PAPER_TOP1 = 78.4  # the paper's own row for this model (15.0M params)
