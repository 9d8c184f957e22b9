"""On-disk layout of the preprocessed cache, and reading/writing one case.

    CACHE/
      config.yaml          resolved PreprocessConfig that built it
      fingerprint.json     dataset fingerprint (spacings, shapes, intensity stats per modality)
      index.csv            one row per cached case (case_id, split, modality, shape, ...)
      report.csv           bad cases: case_id, path, problem
      cases/<case_id>/
        image.npy          float32 (C, X, Y, Z), normalised, RAS, target spacing, cropped
        body.npy           uint8   (X, Y, Z) body/foreground mask
        label.npy          int16   (X, Y, Z) manifest label map (optional)
        anatomy.npy        int16   (X, Y, Z) manifest anatomy map (organs, parcellation; optional)
        tissue.npy         uint8   (X, Y, Z) multi-Otsu tissue classes, 0 outside the body
        supervoxels.npy    int32   (X, Y, Z) SLIC supervoxels, 0 outside the body
        meta.json          geometry to map outputs back onto the source grid + provenance

Every ``.npy`` is uncompressed, so it opens with ``np.load(..., mmap_mode="r")``: a
random crop reads only the pages it touches. A case folder is written whole into a
temporary sibling and renamed into place, so a crash never leaves half a case.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from medmae.atomic import atomic_dir

MAP_NAMES = ("body", "label", "anatomy", "tissue", "supervoxels")
MAP_DTYPES = {"body": np.uint8, "label": np.int16, "anatomy": np.int16, "tissue": np.uint8, "supervoxels": np.int32}
CASES = "cases"
INDEX = "index.csv"


def write_case(cache_dir: str | os.PathLike, case_id: str, image: np.ndarray,
               maps: Mapping[str, np.ndarray | None], meta: dict) -> Path:
    """Write one case atomically; ``image`` is (C, X, Y, Z), every map (X, Y, Z)."""
    if image.ndim != 4:
        raise ValueError(f"case {case_id}: image must be (C, X, Y, Z), got shape {image.shape}")
    target = Path(cache_dir) / CASES / case_id
    with atomic_dir(target) as tmp:
        np.save(tmp / "image.npy", np.ascontiguousarray(image, dtype=np.float32))
        for name, arr in maps.items():
            if arr is None:
                continue
            if name not in MAP_NAMES:
                raise ValueError(f"case {case_id}: unknown map {name!r} (known: {MAP_NAMES})")
            if arr.shape != image.shape[1:]:
                raise ValueError(f"case {case_id}: map {name} shape {arr.shape} != image {image.shape[1:]}")
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr, dtype=MAP_DTYPES[name]))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
    return target


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class CachedCase:
    """One cached case, opened lazily with memory maps."""

    path: Path
    meta: dict

    @property
    def case_id(self) -> str:
        return self.path.name

    @property
    def image(self) -> np.ndarray:
        """float32 memmap (C, X, Y, Z)."""
        return np.load(self.path / "image.npy", mmap_mode="r")

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) cached grid voxel -> RAS world mm."""
        return np.asarray(self.meta["affine"], dtype=np.float64)

    def has(self, name: str) -> bool:
        return (self.path / f"{name}.npy").exists()

    def map(self, name: str) -> np.ndarray | None:
        """memmap (X, Y, Z) of a cached map, or None when the case has none."""
        if name not in MAP_NAMES:
            raise KeyError(f"unknown map {name!r} (known: {MAP_NAMES})")
        p = self.path / f"{name}.npy"
        return np.load(p, mmap_mode="r") if p.exists() else None


def open_case(path: str | os.PathLike) -> CachedCase:
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: not a cached case (no meta.json)")
    return CachedCase(path, json.loads(meta_path.read_text(encoding="utf-8")))


def read_index(cache_dir: str | os.PathLike) -> list[dict]:
    """Rows of ``index.csv`` (empty list when the cache has no index yet)."""
    p = Path(cache_dir) / INDEX
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def list_cases(cache_dir: str | os.PathLike, split: str | None = None) -> list[CachedCase]:
    """Cached cases listed in the index (optionally of one split), sorted by case id."""
    rows = read_index(cache_dir)
    if not rows:
        raise FileNotFoundError(f"{cache_dir}: no {INDEX}; run `medmae preprocess` first")
    out = [open_case(Path(cache_dir) / CASES / r["case_id"]) for r in rows
           if split is None or r.get("split") == split]
    return sorted(out, key=lambda c: c.case_id)
