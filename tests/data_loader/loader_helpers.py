"""Tiny caches written with ``medmae.preprocess.cache.write_case`` plus a minimal index.csv."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np

from medmae.preprocess.cache import INDEX, write_case
from medmae.data.config import LoaderConfig


def write_index(cache: Path, splits: Mapping[str, str]) -> None:
    """index.csv with the columns the loader reads (case_id, split)."""
    with open(cache / INDEX, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "split"])
        for case_id, split in splits.items():
            w.writerow([case_id, split])


def coded_case(shape, rng: np.random.Generator, with_anatomy: bool = True):
    """A case whose image, anatomy and supervoxels all equal a voxel code, so alignment
    after crops and flips is checkable: code = 1 + x * Y * Z + y * Z + z (unique per voxel).
    The body is a ball in the middle (radius 0.35 of the smallest axis)."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    code = 1 + x * shape[1] * shape[2] + y * shape[2] + z
    centre = (np.asarray(shape) - 1) / 2
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    body = (r < 0.35 * min(shape)).astype(np.uint8)
    maps = {"body": body, "supervoxels": code.astype(np.int32)}
    if with_anatomy:
        maps["anatomy"] = (code % 30000).astype(np.int16)
    image = code.astype(np.float32)[None]
    return image, maps


def make_cache(root: Path, shapes, seed: int = 0, without_anatomy=(), split_of=None,
               without_midline=(2,)) -> Path:
    """A cache of coded cases ``case_000``.. of the given shapes; returns its folder.

    Each case's meta has a midline at x = 0.37 * X + 0.25 (off the volume's centre), except
    the cases in ``without_midline``."""
    rng = np.random.default_rng(seed)
    splits = {}
    for i, shape in enumerate(shapes):
        case_id = f"case_{i:03d}"
        image, maps = coded_case(shape, rng, with_anatomy=i not in without_anatomy)
        meta = {"affine": np.eye(4)}
        if i not in without_midline:
            meta["midline"] = {"axis": 0, "index": 0.37 * shape[0] + 0.25, "score": 1.0}
        write_case(root, case_id, image, maps, meta)
        splits[case_id] = split_of(i) if split_of else "train"
    write_index(root, splits)
    return root


def loader_cfg(cache: Path, **overrides) -> LoaderConfig:
    """A small LoaderConfig over ``cache`` (16^3 crops, 2 per volume, 4 per batch, no workers)."""
    base = dict(cache_dir=str(cache), crop_size=(16, 16, 16), crops_per_volume=2, batch_size=4, workers=0,
                priors=["anatomy", "tissue"])
    base.update(overrides)
    return LoaderConfig(**base)
