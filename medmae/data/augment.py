"""MONAI dictionary augmentations applied to each crop (image and maps alike for the spatial ones)."""

from __future__ import annotations

from typing import Sequence

from monai.transforms import (Compose, RandFlipd, RandRotate90d, RandScaleIntensityd,
                              RandShiftIntensityd)

from medmae.data.config import AugmentConfig


def build_augment(cfg: AugmentConfig, map_keys: Sequence[str]) -> Compose | None:
    """Compose of random flips (each axis), 90-degree turns in axes (0, 1) on "image" and
    every key in ``map_keys``, then intensity scale/shift on "image"; None when all are off.

    Inputs per key are (C, X, Y, Z) tensors; call ``set_random_state`` before each use to
    make the draws reproducible.
    """
    spatial = ["image", *map_keys]
    ts = []
    if cfg.flip_prob > 0:
        ts += [RandFlipd(keys=spatial, prob=cfg.flip_prob, spatial_axis=axis) for axis in range(3)]
    if cfg.rotate90_prob > 0:
        ts.append(RandRotate90d(keys=spatial, prob=cfg.rotate90_prob, max_k=3, spatial_axes=(0, 1)))
    if cfg.intensity_scale > 0 and cfg.intensity_prob > 0:
        ts.append(RandScaleIntensityd(keys="image", factors=cfg.intensity_scale, prob=cfg.intensity_prob))
    if cfg.intensity_shift > 0 and cfg.intensity_prob > 0:
        ts.append(RandShiftIntensityd(keys="image", offsets=cfg.intensity_shift, prob=cfg.intensity_prob))
    return Compose(ts) if ts else None
