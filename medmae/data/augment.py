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


def left_right_state(augment: Compose | None) -> tuple[bool, bool]:
    """After ``augment`` ran on a crop: (axis 0 reversed, axis 0 still left-right).

    Reads the draws of the axis-0 flip and of the 90-degree turn (``_do_transform`` and
    ``_rand_k``, MONAI's record of its last draw): a half turn reverses axis 0, a quarter
    turn moves the left-right axis to axis 1.
    """
    reversed_x, on_axis0 = False, True
    for t in (augment.transforms if augment is not None else ()):
        if isinstance(t, RandFlipd) and t._do_transform and 0 in _axes(t.flipper.spatial_axis):
            reversed_x = not reversed_x
        elif isinstance(t, RandRotate90d) and t._do_transform:
            k = t._rand_k % 4
            reversed_x = reversed_x != (k == 2)
            on_axis0 = k % 2 == 0
    return reversed_x, on_axis0


def _axes(spatial_axis) -> tuple[int, ...]:
    if spatial_axis is None:
        return (0, 1, 2)
    return tuple(spatial_axis) if isinstance(spatial_axis, (list, tuple)) else (int(spatial_axis),)
