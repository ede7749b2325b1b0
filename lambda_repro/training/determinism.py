"""Randomness that depends only on (seed, epoch, sample): an interrupted run resumes bit for bit.

Each epoch's shuffling comes from the sampler's ``seed + epoch``; each image's augmentation
from a generator seeded with ``(seed, epoch, index)`` right before its transform runs. So
which worker loads an image, how many workers there are, and whether the run restarted
half-way change nothing.
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


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

    def __getitem__(self, key: int | tuple[int, int]):
        """``key`` is an index (in the epoch set by :meth:`set_epoch`) or an ``(epoch, index)`` pair."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, epoch, index))
            return self.dataset[index]


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch (after a mid-epoch checkpoint).

    ``skip`` indices of this rank's epoch order are left out; the order itself is unchanged.
    With ``accumulation_steps`` A > 1 each rank serves A "virtual ranks" (``rank * A + k``
    of a world of ``num_replicas * A``), one micro-batch of ``micro_batch`` images from each
    in turn per optimizer step: so 1 process x 2 accumulation steps sees, micro-batch for
    micro-batch, what 2 processes see, and A = 1 is exactly DistributedSampler's order.
    Only whole optimizer steps are yielded (the epoch's tail is dropped, as drop_last does).
    """

    def __init__(self, *args, accumulation_steps: int = 1, micro_batch: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0
        self.accumulation_steps = accumulation_steps
        self.micro_batch = micro_batch
        A = accumulation_steps
        self._virtual = [
            DistributedSampler(*args, **{**kwargs, "num_replicas": self.num_replicas * A, "rank": self.rank * A + k})
            for k in range(A)
        ]

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of this rank."""
        return len(self._virtual[0]) // self.micro_batch

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        for virtual in self._virtual:
            virtual.set_epoch(epoch)
        self.skip = skip

    def order(self) -> list[int]:
        """This rank's whole epoch, micro-batch after micro-batch."""
        streams = [list(virtual) for virtual in self._virtual]
        b = self.micro_batch
        steps = range(self.steps_per_epoch)
        return [i for step in steps for stream in streams for i in stream[step * b : (step + 1) * b]]

    def __iter__(self):
        return iter(self.order()[self.skip :])

    def __len__(self) -> int:
        return self.steps_per_epoch * self.accumulation_steps * self.micro_batch - self.skip


class EpochTaggedSampler(Sampler):
    """Yields ``(epoch, index)`` for :class:`SeededAugmentation`: persistent loader workers keep their own
    copy of the dataset, which never sees :meth:`SeededAugmentation.set_epoch`, so the epoch travels with
    each index instead."""

    def __init__(self, sampler: ResumableDistributedSampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return iter([(epoch, index) for index in self.sampler])

    def __len__(self) -> int:
        return len(self.sampler)
