"""Labelled crops for fine-tuning (optionally only N cases: the label fraction) and
validation cases, all from the preprocessed cache."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from medmae.data.cache import CachedCase, list_cases
from medmae.data.dataset import CropDataset
from medmae.data.loader import CropLoader, seed_worker
from medmae.data.sampler import CaseBatchSampler
from medmae.heads.segmentation.classmap import to_classes
from medmae.heads.segmentation.config import SegDataConfig


def labelled_cases(cfg: SegDataConfig, split: str | None) -> list[CachedCase]:
    """Cases of ``split`` that hold ``cfg.label_map`` (sorted by id)."""
    return [c for c in list_cases(cfg.cache_dir, split) if c.has(cfg.label_map)]


def choose_label_cases(cases: Sequence[CachedCase], n: int | None, seed: int) -> list[CachedCase]:
    """``n`` of ``cases`` chosen with ``seed`` (all when n is None); the same seed and
    case list give the same choice, and a larger n keeps the smaller n's cases."""
    if n is None:
        return list(cases)
    if n > len(cases):
        raise ValueError(f"data.label_cases={n} but only {len(cases)} labelled case(s) in the split")
    order = np.random.default_rng(seed).permutation(len(cases))[:n]
    return [cases[i] for i in sorted(order)]


def train_cases(cfg: SegDataConfig) -> list[CachedCase]:
    cases = labelled_cases(cfg, cfg.split)
    if not cases:
        raise ValueError(f"{cfg.cache_dir}: no case of split {cfg.split!r} has a {cfg.label_map!r} map "
                         "(data.label_map; the manifest's label/anatomy column)")
    return choose_label_cases(cases, cfg.label_cases, cfg.label_seed)


def build_train_loader(cfg: SegDataConfig, cases: Sequence[CachedCase], seed: int, rank: int = 0,
                       world_size: int = 1) -> CropLoader:
    """The pretraining loader (crops, augmentation, resumable stream) over ``cases``, cropping
    the label map along with the image. Batches: {"image" (B, C, X, Y, Z), "body",
    label_map (B, 1, X, Y, Z) int16, "case_id"}."""
    lcfg = cfg.model_copy(update={"priors": [cfg.label_map], "device_resident": False})
    dataset = CropDataset(list(cases), lcfg, seed)
    sampler = CaseBatchSampler(len(dataset), lcfg.volumes_per_batch, seed, rank, world_size)
    return CropLoader(dataset, sampler, num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=cfg.workers > 0, prefetch_factor=2 if cfg.workers > 0 else None,
                      worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(int(seed)))


def val_cases(cfg: SegDataConfig, max_cases: int | None = None) -> list[CachedCase]:
    """Labelled cases of ``cfg.val_split`` (first ``max_cases``); [] without a split."""
    if not cfg.val_split:
        return []
    cases = labelled_cases(cfg, cfg.val_split)
    return cases[:max_cases] if max_cases else cases


def iter_val(cases: Sequence[CachedCase], label_map: str, lut: np.ndarray
             ) -> Iterator[tuple[str, np.ndarray, torch.Tensor, list[float]]]:
    """(case id, image (C, X, Y, Z), reference classes (X, Y, Z), spacing mm) per case."""
    for c in cases:
        ref = torch.from_numpy(to_classes(np.asarray(c.map(label_map)), lut))
        spacing = np.sqrt((c.affine[:3, :3] ** 2).sum(0)).tolist()
        yield c.case_id, np.asarray(c.image), ref, spacing
