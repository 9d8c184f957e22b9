"""Preprocessing config: what `medmae preprocess` does to every case."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medmae.config.base import StrictModel


class CTIntensity(StrictModel):
    window: tuple[float, float] = (-1000.0, 1000.0)
    """HU window clipped to, then scaled linearly to [0, 1]."""


class MRIntensity(StrictModel):
    percentiles: tuple[float, float] = (0.5, 99.5)
    """Clip to these percentiles (inside the body), then z-score inside the body."""


class BodyMaskConfig(StrictModel):
    ct_threshold_hu: float = -500.0
    mr_threshold: Literal["otsu"] | float = "otsu"
    closing_mm: float = 6.0
    fill_holes: bool = True
    largest_component: bool = True


class PriorsConfig(StrictModel):
    tissue_classes: int = Field(3, ge=2, le=6)
    """Number of multi-Otsu intensity classes inside the body (0 = background)."""
    supervoxels: int = Field(256, ge=0)
    """Approximate number of SLIC supervoxels per case (0 disables)."""
    slic_compactness: float = 0.1


class PreprocessConfig(StrictModel):
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)
    """Target voxel size in mm (RAS i, j, k)."""
    ct: CTIntensity = CTIntensity()
    mr: MRIntensity = MRIntensity()
    body: BodyMaskConfig = BodyMaskConfig()
    priors: PriorsConfig = PriorsConfig()
    crop_to_body: bool = True
    margin_mm: float = 5.0
    min_shape: tuple[int, int, int] = (32, 32, 32)
    """Volumes smaller than this after cropping are padded (constant background)."""
    workers: int = Field(2, ge=0)
    """Worker processes (0 = run in the main process)."""
