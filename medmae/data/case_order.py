"""Which cases go in which batch: one shuffled pass per epoch, split across ranks.

The order of an epoch is ``torch.utils.data.DistributedSampler``'s (seed + epoch; with
several ranks ``drop_last=True``, so ranks see disjoint cases and a few cases sit out an
epoch when the count does not divide). Each rank's list is then padded by cycling to a
multiple of the volumes per batch, so every batch is full.
"""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import DistributedSampler, Sampler


def epoch_order(n_cases: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1,
                multiple: int = 1, shuffle: bool = True) -> list[int]:
    """This rank's case indices for ``epoch``, length a multiple of ``multiple``."""
    if n_cases < world_size:
        raise ValueError(f"{n_cases} case(s) cannot be split over {world_size} ranks; every rank needs one")
    ds = DistributedSampler(range(n_cases), num_replicas=world_size, rank=rank, shuffle=shuffle,
                            seed=seed, drop_last=world_size > 1)
    ds.set_epoch(epoch)
    order = list(ds)
    padded = list(order)
    while len(padded) % multiple:
        padded.append(order[len(padded) % len(order)])
    return padded


class CaseBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields batches of dataset keys ``(epoch, position, case index)`` for one epoch,
    starting at batch ``start``, or epoch after epoch without end (see :meth:`set_epoch`).

    The endless form lets DataLoader workers prefetch across epoch boundaries, so a short
    epoch (few cases) does not leave workers idle while the next one starts.
    """

    def __init__(self, n_cases: int, volumes_per_batch: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True):
        if volumes_per_batch < 1:
            raise ValueError(f"volumes_per_batch must be >= 1, got {volumes_per_batch}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.n_cases, self.volumes = n_cases, volumes_per_batch
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.epoch, self.start, self.endless = 0, 0, False
        epoch_order(n_cases, 0, seed, rank, world_size, volumes_per_batch, shuffle)  # validates now

    def set_epoch(self, epoch: int, start: int = 0, endless: bool = False) -> None:
        """Next iteration covers ``epoch`` from its batch ``start`` on (and, when ``endless``,
        every later epoch)."""
        self.epoch, self.start, self.endless = int(epoch), int(start), bool(endless)

    def batches_per_epoch(self) -> int:
        return len(epoch_order(self.n_cases, self.epoch, self.seed, self.rank, self.world_size,
                               self.volumes, self.shuffle)) // self.volumes

    def __len__(self) -> int:
        """Batches left in the epoch (an endless iteration has no length)."""
        if self.endless:
            raise TypeError("an endless CaseBatchSampler has no length")
        return max(0, self.batches_per_epoch() - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        epoch, start = self.epoch, self.start
        while True:
            yield from self._epoch_batches(epoch, start)
            if not self.endless:
                return
            epoch, start = epoch + 1, 0

    def _epoch_batches(self, epoch: int, start: int) -> Iterator[list[tuple[int, int, int]]]:
        order = epoch_order(self.n_cases, epoch, self.seed, self.rank, self.world_size, self.volumes, self.shuffle)
        v = self.volumes
        for b in range(start, len(order) // v):
            yield [(epoch, b * v + j, order[b * v + j]) for j in range(v)]
