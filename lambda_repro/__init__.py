"""lambda-repro: reproducibility and benchmarking suite for Lambda-ResNet-50 (LambdaNetworks)."""

__version__ = "0.1.0"
