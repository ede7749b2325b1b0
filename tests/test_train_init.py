"""Zero-initialised residual branches: every bottleneck of the model starts as the identity."""

from __future__ import annotations

import torch

from lambda_repro.models import create_model
from lambda_repro.training.trainer import zero_init_residual_branches


def test_every_bottleneck_of_lambda_resnet26_starts_as_identity():
    torch.manual_seed(0)
    model = create_model("lambda_resnet26", num_classes=4)
    zero_init_residual_branches(model)
    norms = [m.bn3 for m in model.modules() if hasattr(m, "bn3")]
    assert len(norms) == 8  # 2 + 2 + 2 + 2 blocks
    assert all(torch.count_nonzero(n.weight) == 0 for n in norms)
    block = model.layer1[1]  # no downsampling: output = relu(input + 0)
    block.eval()
    x = torch.rand(2, 256, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
