"""A seeded, resumable, rank-sharded sampler, and per-sample seeding of data augmentation.

Exact resume needs the same images in the same order with the same augmentation after a
restart. The order is a permutation drawn from (seed, epoch) alone, so it can be rebuilt and
entered at any batch; each sample carries its own seed (from seed, epoch and position), and
`SeededSamples` runs the dataset's augmentation under that seed. Neither depends on the global
random state, on how many DataLoader workers there are, or on what ran before the restart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_SEED_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, epoch, position) over 63 bits


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return ((seed * 1_000_003 + epoch) * _SEED_MIX + position) % (2**63 - 1)


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset index, sample seed)`` for this rank's share of each epoch.

    Every epoch is a permutation of the dataset drawn from ``(seed, epoch)``, cut to a whole
    number of global batches (``batch_size × world_size``, the remainder is dropped) and dealt
    out in contiguous per-step slices so that rank r gets the r-th part of each global batch.
    `set_epoch(epoch, start_batch)` starts the next iteration `start_batch` batches into the epoch.
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if dataset_size < batch_size * world_size:
            raise ValueError(
                f"{dataset_size} images cannot fill one global batch of {batch_size} × {world_size} processes"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator).tolist()
        global_batch = self.batch_size * self.world_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                yield order[position], sample_seed(self.seed, self.epoch, position)


class SeededSamples(Dataset):
    """Wraps a map-style dataset: item ``(index, seed)`` is ``dataset[index]`` drawn under `seed`.

    Python's, NumPy's and torch's global generators are seeded for the call and restored after
    it, so the training process's own random state is untouched.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
