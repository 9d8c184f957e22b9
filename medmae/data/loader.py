"""`build_loader`: the batches pretraining consumes, from the cache, for one rank.

The returned loader works two ways:
  * ``for batch in loader`` — one epoch (call ``loader.set_epoch(e)`` first, like a
    DistributedSampler);
  * ``next(loader)`` — an endless stream for step-based training, epoch after epoch, whose
    position (``state_dict()`` = {"epoch", "batch"}) is saved in checkpoints and restored
    with ``load_state_dict`` so a resumed run gets the batches it would have got.
Use one way per loader object.

Batch: {"image": float32 (B, C, X, Y, Z), "body": uint8 (B, 1, X, Y, Z), one (B, 1, X, Y, Z)
integer map per prior in ``cfg.priors``, "crop_start": int64 (B, 3) crop corners in the cached
arrays, "midline": float32 (B,) mid-sagittal plane along crop axis 0 in crop voxels (NaN: none;
:mod:`medmae.data.crop_midline`), "case_id": list of B str}, B = ``cfg.batch_size``:
the crops of ``batch_size / crops_per_volume`` volumes, in order.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from medmae.preprocess.cache import list_cases
from medmae.data.config import LoaderConfig
from medmae.data.dataset import CropDataset, collate_crops
from medmae.data.case_order import CaseBatchSampler


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from its torch seed (base seed + worker id)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


class CropLoader(DataLoader):
    """A DataLoader over :class:`CropDataset` driven by a :class:`CaseBatchSampler`, which is
    also an endless resumable stream (see the module docstring)."""

    def __init__(self, dataset: CropDataset, batch_sampler: CaseBatchSampler, **kwargs: Any):
        super().__init__(dataset, batch_sampler=batch_sampler, collate_fn=collate_crops, **kwargs)
        self._epoch, self._batch, self._stream = 0, 0, None
        self._per_epoch = batch_sampler.batches_per_epoch()  # the same in every epoch

    def set_epoch(self, epoch: int) -> None:
        """The epoch that ``for batch in loader`` covers next."""
        self._stream = None
        self.batch_sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)

    def __next__(self) -> dict[str, Any]:
        if self._stream is None:  # workers prefetch across epochs from here on
            self.batch_sampler.set_epoch(self._epoch, self._batch, endless=True)
            self._stream = super().__iter__()
        batch = next(self._stream)
        self._batch += 1
        if self._batch == self._per_epoch:
            self._epoch, self._batch = self._epoch + 1, 0
        return batch

    def state_dict(self) -> dict[str, int]:
        """Position of the stream: the next batch is batch ``batch`` of epoch ``epoch``."""
        return {"epoch": self._epoch, "batch": self._batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._epoch, self._batch, self._stream = int(state["epoch"]), int(state["batch"]), None

    def close(self) -> None:
        """Stop the persistent workers now (they also stop when the loader is garbage-collected)."""
        self._stream = None
        if self._iterator is not None:
            self._iterator._shutdown_workers()
            self._iterator = None


def default_device() -> torch.device:
    """This process's GPU when there is one (set by torchrun / the trainer), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_loader(cfg: LoaderConfig, seed: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str | None = None):
    """The loader of this rank's share of ``cfg.cache_dir`` (split ``cfg.split``).

    Returns a :class:`CropLoader` (a DataLoader), or with ``cfg.device_resident`` a
    :class:`medmae.data.resident.ResidentLoader` on ``device`` (default: this process's
    GPU, else CPU) with the same interface and batches.
    """
    cases = list_cases(cfg.cache_dir, cfg.split)
    if not cases:
        raise ValueError(f"{cfg.cache_dir}: no cached case in split {cfg.split!r} (data.split)")
    if cfg.device_resident:
        from medmae.data.resident import ResidentLoader

        return ResidentLoader(cases, cfg, seed, rank, world_size, device or default_device())
    dataset = CropDataset(cases, cfg, seed)
    sampler = CaseBatchSampler(len(dataset), cfg.volumes_per_batch, seed, rank, world_size)
    workers = cfg.workers
    return CropLoader(
        dataset, sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(int(seed)),
    )
