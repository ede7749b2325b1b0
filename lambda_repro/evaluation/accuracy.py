"""Counting correct top-k predictions: counts add up across batches and ranks, percentages do not."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have their target among the ``k`` highest logits, for each ``k``.

    ``k`` larger than the number of classes counts every row (top-5 of 3 classes is certain).
    """
    max_k = min(max(ks), logits.shape[1])
    top = logits.topk(max_k, dim=1).indices  # (N, max_k), best first
    hits = top.eq(targets.view(-1, 1))
    return [int(hits[:, : min(k, max_k)].any(dim=1).sum()) for k in ks]


@dataclass
class TopKCounts:
    """Running top-1 / top-5 counts and the summed loss."""

    images: int = 0
    top1: int = 0
    top5: int = 0
    loss_sum: float = 0.0

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: float = 0.0) -> None:
        top1, top5 = topk_correct(logits.float(), targets)
        self.images += targets.shape[0]
        self.top1 += top1
        self.top5 += top5
        self.loss_sum += loss_sum

    def as_tensor(self) -> torch.Tensor:
        # float64 holds counts exactly up to 2**53, far beyond any dataset.
        return torch.tensor([self.images, self.top1, self.top5, self.loss_sum], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> TopKCounts:
        images, top1, top5, loss_sum = values.tolist()
        return cls(int(images), int(top1), int(top5), float(loss_sum))

    def percentages(self) -> dict[str, float]:
        if self.images == 0:
            raise ValueError("no images were evaluated")
        return {
            "top1": 100.0 * self.top1 / self.images,
            "top5": 100.0 * self.top5 / self.images,
            "loss": self.loss_sum / self.images,
        }
