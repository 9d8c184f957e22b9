"""Loader config: random crops from the preprocessed cache."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medmae.config.base import StrictModel

PriorName = Literal["body", "label", "anatomy", "tissue", "supervoxels"]


class AugmentConfig(StrictModel):
    flip_prob: float = Field(0.5, ge=0, le=1)
    """Chance of a flip along each of the three axes (independently)."""
    rotate90_prob: float = Field(0.0, ge=0, le=1)
    """Chance of a 90/180/270 degree turn in the first two axes (needs crop_size[0] == crop_size[1])."""
    intensity_scale: float = Field(0.1, ge=0)
    """Image multiplied by 1 + U(-s, s) (MONAI RandScaleIntensity); 0 disables."""
    intensity_shift: float = Field(0.1, ge=0)
    """U(-s, s) added to the image (MONAI RandShiftIntensity); 0 disables."""
    intensity_prob: float = Field(0.5, ge=0, le=1)
    """Chance that each intensity augmentation is applied to a crop."""


class LoaderConfig(StrictModel):
    cache_dir: str = "cache"
    split: str | None = "train"
    """Only cases of this manifest split (None = all cases)."""
    crop_size: tuple[int, int, int] = (96, 96, 96)
    crops_per_volume: int = Field(2, ge=1)
    """Crops cut from each volume read; a batch holds batch_size / crops_per_volume volumes."""
    foreground_prob: float = Field(0.9, ge=0, le=1)
    """Chance that a crop is centred on a body voxel (else uniformly placed)."""
    batch_size: int = Field(4, ge=1)
    """Crops per batch (a multiple of crops_per_volume)."""
    workers: int = Field(2, ge=0)
    """DataLoader worker processes (0 = load in the main process)."""
    augment: AugmentConfig = AugmentConfig()
    device_resident: bool = False
    """Keep cached volumes on the GPU (or in CPU memory without one) and crop/augment there."""
    priors: list[PriorName] = ["body"]
    """Cached maps cropped along with the image (body is always included); a case without
    one gets zeros (body: ones) so batches still stack."""
    pad_value: float = 0.0
    """Image value where a crop reaches past the volume (volumes smaller than the crop)."""
    max_foreground_points: int = Field(4096, ge=1)
    """Body voxels remembered per case (a random sample) as centres of foreground crops."""

    @model_validator(mode="after")
    def _check(self) -> "LoaderConfig":
        if min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")
        if self.batch_size % self.crops_per_volume:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of crops_per_volume "
                             f"({self.crops_per_volume}): each batch holds whole volumes' crops")
        if self.augment.rotate90_prob > 0 and self.crop_size[0] != self.crop_size[1]:
            raise ValueError(f"augment.rotate90_prob > 0 turns crops in axes (0, 1), which needs "
                             f"crop_size[0] == crop_size[1], got {self.crop_size}")
        return self

    @property
    def volumes_per_batch(self) -> int:
        return self.batch_size // self.crops_per_volume

    @property
    def maps(self) -> list[str]:
        """The maps every crop carries: body first, then the other requested priors."""
        return ["body"] + [p for p in dict.fromkeys(self.priors) if p != "body"]
