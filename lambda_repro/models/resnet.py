"""torchvision's ResNet-50, registered as the baseline every measurement is compared with."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as torchvision_resnet50

from lambda_repro.models._registry import register_model


@register_model
def resnet50(num_classes: int = 1000, **kwargs) -> nn.Module:
    return torchvision_resnet50(weights=None, num_classes=num_classes, **kwargs)
