"""Labelled crops for fine-tuning (optionally only N cases: the label fraction) and
validation cases, all from the preprocessed cache; and the reference label maps on each
case's SOURCE grid (from the manifest the cache was built from) for evaluation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from medmae.data.cache import CachedCase, list_cases
from medmae.io.manifest import Case, read_manifest, sha256_of
from medmae.io.scan import source_files
from medmae.io.volume import Volume
from medmae.preprocess.case import read_map
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


def manifest_cases(manifest: str | os.PathLike, cases: Sequence[CachedCase]) -> dict[str, Case]:
    """case_id -> the manifest's Case for each cached case. Raises ValueError naming the
    manifest and the case when one is missing or its files (image and maps) are not the ones
    that were cached (sha256 differs from the cache's meta.json)."""
    by_id = {c.case_id: c for c in read_manifest(manifest)}
    out = {}
    for c in cases:
        case = by_id.get(c.case_id)
        if case is None:
            raise ValueError(f"{manifest}: no case {c.case_id!r}; give the manifest the cache was built from")
        sha = case.sha256 or sha256_of(source_files(case))
        if sha != c.meta.get("source_sha256"):
            raise ValueError(f"{manifest}: case {c.case_id!r}: its files differ from the ones cached in {c.path} "
                             "(sha256); re-run `medmae preprocess` or give the manifest the cache was built from")
        out[c.case_id] = case
    return out


def source_reference(case: Case, meta: dict, label_map: str, lut: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The case's ``label_map`` file ("label" or "anatomy" column) as class indices on its
    source scan's grid (X0, Y0, Z0) (reoriented onto it if stored in another axis order), and
    that grid's spacing in mm. Raises ScanError naming the file when it does not cover the scan."""
    path = {"label": case.label, "anatomy": case.anatomy}.get(label_map, "")
    if not path:
        raise ValueError(f"case {case.case_id!r}: the manifest names no {label_map} map")
    shape = tuple(int(s) for s in meta["source_shape"])
    grid = Volume(np.broadcast_to(np.zeros((), np.uint8), shape), np.asarray(meta["source_affine"], np.float64),
                  Path(case.image[0]))  # the scan's geometry, without reading its voxels
    labels = read_map(path, grid, label_map)
    return to_classes(np.asarray(labels.array), lut), [float(s) for s in grid.spacing]
