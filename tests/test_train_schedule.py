"""The learning-rate schedule: linear scaling, warmup, cosine decay."""

from __future__ import annotations

import math

import pytest

from lambda_repro.training import TrainConfig, learning_rate


def test_peak_lr_scales_linearly_with_the_global_batch():
    config = TrainConfig(model="m", manifest="x", epochs=1, image_size=64, global_batch=32, world_size=2, base_lr=0.1)
    assert config.peak_lr == pytest.approx(0.0125)
    assert config.per_process_batch == 16


def test_cosine_decay_from_peak_to_zero_without_warmup():
    assert learning_rate(0, 100, 0.4) == pytest.approx(0.4)
    assert learning_rate(50, 100, 0.4) == pytest.approx(0.2)
    assert learning_rate(100, 100, 0.4) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(25, 100, 0.4) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)))


def test_warmup_rises_linearly_then_decays():
    rates = [learning_rate(step, 20, 1.0, warmup_steps=10) for step in range(20)]
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert rates[10] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(rates[10:], rates[11:], strict=False))
