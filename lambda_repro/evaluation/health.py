"""Numerical health of a model in eval mode: non-finite logits and loss, and how large activations get.

A network can score a plausible top-1 while some of its logits are NaN and its activations
grow by orders of magnitude with depth (BatchNorm's running statistics far from the batch
statistics it trained with, compounding through the multiplicative lambda layers). These
figures make that visible instead of leaving a bare ``null`` loss::

    with ActivationMonitor(model) as monitor:
        logits = model(images)
        health.update(logits, monitor)
    health.summary()  # {"ok": False, "nonfinite_logits": 3, "max_abs_activation": {"layer4.2": 7.3e12, ...}, ...}

``max_abs_activation`` is over the finite entries of each stage's output (a residual block,
``layer3.2``; the classifier, ``fc``); a stage whose output holds NaN or inf is counted in
``nonfinite_activations``. A stage is out of range above :data:`MAX_ABS_ACTIVATION`: a
BatchNorm network in good health keeps its activations within a few hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

MAX_ABS_ACTIVATION = 1.0e4


def stage_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The stages to watch: each block of the ResNet stages (``layer1.0``, ...) and ``fc``; else the children."""
    stages: dict[str, nn.Module] = {}
    for name, child in model.named_children():
        if name.startswith("layer") and isinstance(child, nn.Sequential):
            stages.update({f"{name}.{index}": block for index, block in enumerate(child)})
        elif name == "fc" or not any(n.startswith("layer") for n, _ in model.named_children()):
            stages[name] = child
    return stages


class ActivationMonitor:
    """Forward hooks recording, per stage, the largest finite |activation| and the count of non-finite ones."""

    def __init__(self, model: nn.Module, stages: dict[str, nn.Module] | None = None) -> None:
        self.stages = stages if stages is not None else stage_modules(model)
        self.max_abs = dict.fromkeys(self.stages, 0.0)
        self.nonfinite = dict.fromkeys(self.stages, 0)
        self._handles: list = []

    def _hook(self, name: str):
        def record(_module, _inputs, output) -> None:
            if not isinstance(output, torch.Tensor):
                return
            values = output.detach().float()
            finite = torch.isfinite(values)
            self.nonfinite[name] += int((~finite).sum())
            if finite.any():
                self.max_abs[name] = max(self.max_abs[name], float(values.abs().masked_fill(~finite, 0).max()))

        return record

    def __enter__(self) -> ActivationMonitor:
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.stages.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@dataclass
class HealthCounts:
    """Non-finite logits (images with any NaN / inf logit), non-finite losses and per-stage maxima; they add up."""

    images: int = 0
    nonfinite_logits: int = 0
    nonfinite_loss: int = 0
    max_abs_activation: dict[str, float] = field(default_factory=dict)
    nonfinite_activations: dict[str, int] = field(default_factory=dict)

    def update(self, logits: torch.Tensor, losses: torch.Tensor, monitor: ActivationMonitor | None = None) -> None:
        """Add one batch: ``losses`` are the per-image losses, ``monitor`` the hooks that watched its forward pass."""
        self.images += logits.shape[0]
        self.nonfinite_logits += int((~torch.isfinite(logits.float())).any(dim=1).sum())
        self.nonfinite_loss += int((~torch.isfinite(losses)).sum())
        if monitor is not None:
            for name, value in monitor.max_abs.items():
                self.max_abs_activation[name] = max(self.max_abs_activation.get(name, 0.0), value)
            for name, count in monitor.nonfinite.items():
                self.nonfinite_activations[name] = self.nonfinite_activations.get(name, 0) + count

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sums, maxima)`` for all-reduce: counts add up across ranks, maxima take the largest."""
        names = list(self.max_abs_activation)  # stage order: the same model on every rank
        sums = [
            self.images,
            self.nonfinite_logits,
            self.nonfinite_loss,
            *(self.nonfinite_activations[n] for n in names),
        ]
        return torch.tensor(sums, dtype=torch.float64), torch.tensor(
            [self.max_abs_activation[n] for n in names], dtype=torch.float64
        )

    def load_tensors(self, sums: torch.Tensor, maxima: torch.Tensor) -> None:
        names = list(self.max_abs_activation)  # stage order: the same model on every rank
        values = [int(v) for v in sums.tolist()]
        self.images, self.nonfinite_logits, self.nonfinite_loss = values[:3]
        self.nonfinite_activations = dict(zip(names, values[3:], strict=True))
        self.max_abs_activation = dict(zip(names, maxima.tolist(), strict=True))

    def summary(self, max_abs_limit: float = MAX_ABS_ACTIVATION) -> dict:
        """What eval.json records under ``health``; ``problems`` says in words what is wrong (empty when ``ok``)."""
        out_of_range = {n: v for n, v in self.max_abs_activation.items() if v > max_abs_limit}
        nonfinite_stages = {n: c for n, c in self.nonfinite_activations.items() if c}
        problems = []
        if self.nonfinite_logits:
            problems.append(f"{self.nonfinite_logits} of {self.images} images have non-finite (NaN / inf) logits")
        if self.nonfinite_loss:
            problems.append(f"the loss is non-finite for {self.nonfinite_loss} of {self.images} images")
        if nonfinite_stages:
            first = next(iter(nonfinite_stages))
            problems.append(f"non-finite activations in {len(nonfinite_stages)} stage(s), from {first}")
        if out_of_range:
            worst = max(out_of_range, key=out_of_range.get)
            problems.append(
                f"activations above {max_abs_limit:g} in {len(out_of_range)} stage(s), "
                f"from {next(iter(out_of_range))} (largest {out_of_range[worst]:.3g} at {worst})"
            )
        return {
            "ok": not problems,
            "problems": problems,
            "nonfinite_logits": self.nonfinite_logits,
            "nonfinite_loss": self.nonfinite_loss,
            "max_abs_activation_limit": max_abs_limit,
            "max_abs_activation": {n: _finite_or_none(v) for n, v in self.max_abs_activation.items()},
            "nonfinite_activations": nonfinite_stages,
        }


def _finite_or_none(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None
