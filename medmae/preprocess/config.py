"""Preprocessing config: what `medmae preprocess` does to every case."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, field_validator

from medmae.config.base import StrictModel

PIPELINE_VERSION = 1
"""Bumped whenever the code changes what a cached case holds; part of :func:`config_hash`."""


def _increasing(pair: tuple[float, float], what: str) -> tuple[float, float]:
    if not pair[0] < pair[1]:
        raise ValueError(f"{what} must be (low, high) with low < high")
    return pair


class CTIntensity(StrictModel):
    window: tuple[float, float] = (-1000.0, 1000.0)
    """HU window clipped to, then scaled linearly to [0, 1]."""

    @field_validator("window")
    @classmethod
    def _check(cls, v):
        return _increasing(v, "window")


class MRIntensity(StrictModel):
    percentiles: tuple[float, float] = (0.5, 99.5)
    """Clip to these percentiles (inside the body), then z-score inside the body."""

    @field_validator("percentiles")
    @classmethod
    def _check(cls, v):
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        return v


class BodyMaskConfig(StrictModel):
    ct_threshold_hu: float = -500.0
    """CT voxels above this HU are body (before closing / filling)."""
    mr_threshold: Literal["otsu"] | float = "otsu"
    """MR: Otsu's threshold per channel (union over channels), or a fixed raw intensity."""
    closing_mm: float = Field(6.0, ge=0)
    """Radius (mm) of the ellipsoid used for morphological closing (0 disables)."""
    fill_holes: bool = True
    """Fill enclosed holes in 3D and then in every axial slice (lungs, bowel gas)."""
    largest_component: bool = True
    """Keep only the largest 26-connected component (drops table, cables, noise)."""


class PriorsConfig(StrictModel):
    tissue_classes: int = Field(3, ge=2, le=6)
    """Number of multi-Otsu intensity classes inside the body (0 = background)."""
    supervoxels: int = Field(256, ge=0)
    """Approximate number of SLIC supervoxels per case (0 disables)."""
    slic_compactness: float = Field(0.1, gt=0)
    """SLIC's balance of intensity vs space (higher = more cubic supervoxels)."""
    slic_downsample: int = Field(2, ge=1, le=4)
    """Run SLIC on a grid this many times coarser per axis (1 = full resolution)."""


class PreprocessConfig(StrictModel):
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)
    """Target voxel size in mm (RAS i, j, k)."""
    ct: CTIntensity = CTIntensity()
    mr: MRIntensity = MRIntensity()
    body: BodyMaskConfig = BodyMaskConfig()
    priors: PriorsConfig = PriorsConfig()
    crop_to_body: bool = True
    margin_mm: float = Field(5.0, ge=0)
    """Margin kept around the body's bounding box when cropping."""
    min_shape: tuple[int, int, int] = (32, 32, 32)
    """Volumes smaller than this after cropping are padded (constant background)."""
    min_extent_mm: float = Field(10.0, ge=0)
    """Smallest source extent (voxels x voxel size) along every axis; a scan thinner than this
    (a 2-slice series) is refused instead of cached as a mostly-padding volume. Accepts or
    refuses only: not part of the config hash."""
    workers: int = Field(2, ge=0)
    """Worker processes (0 = run in the main process). Does not change the output."""

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, v):
        if min(v) <= 0:
            raise ValueError("spacing must be positive in every axis")
        return v

    @field_validator("min_shape")
    @classmethod
    def _positive_shape(cls, v):
        if min(v) < 1:
            raise ValueError("min_shape must be >= 1 in every axis")
        return v


def config_hash(cfg: PreprocessConfig) -> str:
    """16 hex digits identifying what ``cfg`` makes of a case (``workers`` and
    ``min_extent_mm``, which change no cached case, excluded).

    Two configs with the same hash give identical cached cases, so a re-run may skip them.
    """
    data = cfg.model_dump(mode="json", exclude={"workers", "min_extent_mm"})
    text = json.dumps({"pipeline": PIPELINE_VERSION, "config": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
