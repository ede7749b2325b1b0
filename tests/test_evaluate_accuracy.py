"""Top-k counting and the evaluation loop, on hand-made logits and a model whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lambda_repro.evaluation import TopKCounts, evaluate, shard_indices, topk_correct


def test_topk_counts_rows_whose_target_is_among_the_best_k():
    logits = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 0: top-1
            [0.1, 0.9, 0.8, 0.7, 0.6, 0.5],  # target 5: 5th best, top-5 only
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # target 0: last, neither
        ]
    )
    assert topk_correct(logits, torch.tensor([0, 5, 0])) == [1, 2]


def test_topk_with_fewer_classes_than_k_counts_every_row():
    logits = torch.tensor([[0.1, 0.2, 0.7], [0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6]])
    assert topk_correct(logits, torch.tensor([2, 1, 1, 0])) == [2, 4]


def test_counts_add_and_convert_to_percentages():
    counts = TopKCounts()
    counts.update(torch.eye(4), torch.tensor([0, 1, 3, 3]), loss_sum=2.0)
    assert (counts.images, counts.top1, counts.top5) == (4, 3, 4)
    again = TopKCounts.from_tensor(counts.as_tensor())
    assert again == counts
    assert again.percentages() == {"top1": 75.0, "top5": 100.0, "loss": 0.5}
    with pytest.raises(ValueError, match="no images"):
        TopKCounts().percentages()


def test_shards_cover_every_index_exactly_once():
    shards = [shard_indices(11, rank, 3) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]


class Oracle(nn.Module):
    """Predicts the class written in the first pixel, except for inputs marked wrong (then it is 2nd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = x[:, 0, 0, 0].long()
        logits = nn.functional.one_hot(label, 10).float()
        wrong = x[:, 0, 0, 1] > 0
        logits[wrong] = nn.functional.one_hot((label[wrong] + 1) % 10, 10).float() + 0.5 * logits[wrong]
        return logits


def test_evaluate_scores_a_model_with_known_answers():
    labels = torch.arange(20) % 10
    images = torch.zeros(20, 3, 2, 2)
    images[:, 0, 0, 0] = labels.float()
    images[:5, 0, 0, 1] = 1.0  # the first 5 are predicted wrong (the true class 2nd: in the top-5)
    scores = evaluate(Oracle(), TensorDataset(images, labels), batch_size=6, device=torch.device("cpu"), progress=False)
    assert scores["images"] == 20
    assert scores["top1"] == pytest.approx(75.0)
    assert scores["top5"] == pytest.approx(100.0)
