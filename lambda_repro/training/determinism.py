"""Randomness that depends only on (seed, epoch, sample): an interrupted run resumes bit for bit.

Each epoch's shuffling comes from the sampler's ``seed + epoch``; each image's augmentation
from a generator seeded with ``(seed, epoch, index)`` right before its transform runs. So
which worker loads an image, how many workers there are, and whether the run restarted
half-way change nothing.
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset, DistributedSampler


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; distinct tuples give unrelated seeds."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class SeededAugmentation(Dataset):
    """Wraps a dataset so that loading sample ``i`` in epoch ``e`` always draws the same random numbers.

    torchvision's random transforms draw from torch's global generator; it is seeded per
    sample inside ``fork_rng``, so the caller's generator state is left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.epoch, index))
            return self.dataset[index]


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch (after a mid-epoch checkpoint).

    ``skip`` indices of this rank's epoch order are left out; the order itself is unchanged.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return super().__len__() - self.skip
