"""Loader config: random crops from the preprocessed cache."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medmae.config.base import StrictModel


class AugmentConfig(StrictModel):
    flip_prob: float = Field(0.5, ge=0, le=1)
    rotate90_prob: float = Field(0.0, ge=0, le=1)
    intensity_scale: float = Field(0.1, ge=0)
    intensity_shift: float = Field(0.1, ge=0)


class LoaderConfig(StrictModel):
    cache_dir: str = "cache"
    split: str | None = "train"
    """Only cases of this manifest split (None = all cases)."""
    crop_size: tuple[int, int, int] = (96, 96, 96)
    crops_per_volume: int = Field(4, ge=1)
    foreground_prob: float = Field(0.9, ge=0, le=1)
    """Chance that a crop is centred on a body voxel."""
    batch_size: int = Field(4, ge=1)
    workers: int = Field(2, ge=0)
    augment: AugmentConfig = AugmentConfig()
    device_resident: bool = False
    """Keep cached volumes on the GPU (or pinned memory) and crop/augment there."""
    priors: list[Literal["body", "anatomy", "tissue", "supervoxels"]] = ["body"]
    """Cached prior maps cropped along with the image (for the masking strategies)."""
