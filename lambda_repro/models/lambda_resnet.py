"""Lambda-ResNets: torchvision-style bottleneck ResNets whose 3x3 convolution is a lambda layer.

Layout and module names follow the published code, so its checkpoint's state dict loads
as is: a 7x7 stem, four stages of bottlenecks whose ``conv2`` is a :class:`LambdaLayer`
(stride 2 becomes average pooling after the lambda layer), global pooling and ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from lambda_repro.models._registry import register_model
from lambda_repro.models.lambda_layer import LambdaLayer


class LambdaBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, lambda_implementation: str = "auto"):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = LambdaLayer(width, stride=stride, implementation=lambda_implementation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class LambdaResNet(nn.Module):
    """A bottleneck ResNet with lambda layers in every block.

    Args:
        blocks_per_stage: number of bottlenecks in each of the four stages.
        num_classes: classifier outputs (1000 for ImageNet).
        lambda_implementation: formulation of every lambda layer's position term (see
            :class:`LambdaLayer`); all compute the same function.
    """

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int],
        num_classes: int = 1000,
        lambda_implementation: str = "auto",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, (64, 128, 256, 512), strict=True), start=1):
            stride = 1 if index == 1 else 2
            stage = []
            for block in range(blocks):
                stage.append(LambdaBottleneck(in_channels, width, stride if block == 0 else 1, lambda_implementation))
                in_channels = width * LambdaBottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation, which the published code uses.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model
def lambda_resnet26(**kwargs) -> LambdaResNet:
    return LambdaResNet((2, 2, 2, 2), **kwargs)


@register_model
def lambda_resnet38(**kwargs) -> LambdaResNet:
    return LambdaResNet((2, 3, 5, 2), **kwargs)


@register_model
def lambda_resnet50(**kwargs) -> LambdaResNet:
    return LambdaResNet((3, 4, 6, 3), **kwargs)


@register_model
def lambda_resnet101(**kwargs) -> LambdaResNet:
    return LambdaResNet((3, 4, 23, 3), **kwargs)


@register_model
def lambda_resnet152(**kwargs) -> LambdaResNet:
    return LambdaResNet((3, 8, 36, 3), **kwargs)
