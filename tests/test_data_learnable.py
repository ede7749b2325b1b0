"""The embedded dataset is learnable through the real decode / augmentation path, and not by one cue alone.

A tiny CNN trained for a few epochs on a reduced synthetic set (10 classes, 32-pixel
RandomResizedCrop) must score far above chance (10%) on the held-out val split.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lambda_repro.data import build_dataset, eval_transform, load_manifest, train_transform
from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec

SPEC = SyntheticSpec(classes=10, train_per_class=32, val_per_class=10, min_size=40, max_size=64)


def _tiny_cnn(classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)
    )


def _val_accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


@pytest.mark.slow  # ~40 CPU-seconds: decoding and augmenting 2,560 JPEGs
def test_tiny_cnn_learns_the_synthetic_classes(tmp_path):
    prepare_synthetic(str(tmp_path / "prepared"), str(tmp_path / "manifest.json"), SPEC, seed=0)
    manifest = load_manifest(tmp_path / "manifest.json")
    torch.manual_seed(0)
    train = DataLoader(build_dataset(manifest, "train", train_transform(32)), batch_size=32, shuffle=True)
    val = DataLoader(build_dataset(manifest, "val", eval_transform(32)), batch_size=100)
    model = _tiny_cnn(len(manifest["classes"]))
    epochs = 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=epochs * len(train))
    assert _val_accuracy(model, val) < 0.3  # untrained: about chance
    for _ in range(epochs):
        model.train()
        for images, labels in train:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    assert _val_accuracy(model, val) > 0.5, "chance is 0.1"
