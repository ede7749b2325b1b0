"""Randomness that depends only on (seed, epoch, sample), and a sampler that starts part-way through an epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from lambda_repro.training.determinism import ResumableDistributedSampler, SeededAugmentation, derive_seed


class RandomDraws(Dataset):
    """Each item is a draw from torch's global generator, like a random transform."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def test_augmentation_depends_on_seed_epoch_and_index_only():
    data = SeededAugmentation(RandomDraws(), seed=7)
    first = data[3]
    torch.rand(100)  # the caller's generator state must not matter
    assert torch.equal(data[3], first)
    assert not torch.equal(data[4], first)
    data.set_epoch(1)
    assert not torch.equal(data[3], first)
    data.set_epoch(0)
    assert torch.equal(data[3], first)
    assert not torch.equal(SeededAugmentation(RandomDraws(), seed=8)[3], first)


def test_augmentation_leaves_the_callers_generator_alone():
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    SeededAugmentation(RandomDraws(), seed=1)[0]
    assert torch.equal(torch.rand(2), expected)


def test_derived_seeds_differ_for_different_tuples():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, e, i) for e in range(5) for i in range(50)}) == 250
    assert 0 <= derive_seed(123, 4) < 2**63


def test_sampler_skip_resumes_the_same_epoch_order():
    ranks = [ResumableDistributedSampler(range(20), num_replicas=2, rank=r, shuffle=True, seed=3) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_position(epoch=2, skip=0)
    full = [list(s) for s in ranks]
    assert sorted(full[0] + full[1]) == list(range(20))  # the ranks' shards cover the epoch once
    for sampler, order in zip(ranks, full, strict=True):
        sampler.set_position(epoch=2, skip=4)
        assert list(sampler) == order[4:]
        assert len(sampler) == len(order) - 4
    ranks[0].set_position(epoch=3, skip=0)
    assert list(ranks[0]) != full[0]  # a new epoch shuffles anew
