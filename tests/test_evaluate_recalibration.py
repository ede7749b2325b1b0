"""BatchNorm recalibration: running statistics recomputed exactly from data, weights untouched."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from lambda_repro.evaluation.recalibration import recalibrate_batchnorm


def test_running_statistics_become_the_average_over_the_chosen_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3))
    norm = model[1]
    norm.running_mean.fill_(100.0)  # stale statistics, as a short run leaves them
    norm.running_var.fill_(1e-4)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.randn(12, 2, 4, 4) * 3 + 1
    data = TensorDataset(images, torch.zeros(12, dtype=torch.long))
    used = recalibrate_batchnorm(model, data, images=12, batch_size=4, device=torch.device("cpu"))
    assert used == 12 and not model.training
    assert norm.momentum == 0.1  # restored
    # Equal batches: the cumulative average of the 3 batch means is the mean over all images.
    features = model[0](images)
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist()
    batches = [features[order[i : i + 4]] for i in range(0, 12, 4)]
    expected_var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(dim=0)
    torch.testing.assert_close(norm.running_var, expected_var, rtol=1e-5, atol=1e-5)
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_fewer_images_than_the_dataset_are_a_seeded_choice():
    model = nn.Sequential(nn.BatchNorm2d(1))
    data = TensorDataset(torch.arange(20.0).view(20, 1, 1, 1), torch.zeros(20, dtype=torch.long))
    recalibrate_batchnorm(model, data, images=5, batch_size=5, device=torch.device("cpu"), seed=1)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(1))[:5]
    assert float(model[0].running_mean) == float(order.float().mean())
    assert recalibrate_batchnorm(model, data, images=0, batch_size=5, device=torch.device("cpu")) == 0
