"""Geometry: RAS reorientation + resampling (MONAI), crop/pad windows.

Every array here is in voxel index order (i, j, k) with a (4, 4) voxel -> RAS mm affine.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing, SpatialResample


RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
MODES = {1: "bilinear", 0: "nearest"}  # MONAI's "bilinear" is trilinear on 3D grids
COVER_TOL = 1e-4  # a resampled coverage mask below 1 - this marks points outside the source


def _meta_tensor(array: np.ndarray, affine: np.ndarray) -> MetaTensor:
    """(C, X, Y, Z) numpy -> float32 MetaTensor carrying ``affine``."""
    data = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return MetaTensor(data, affine=torch.as_tensor(affine, dtype=torch.float64))


def to_ras_spacing(image: np.ndarray, affine: np.ndarray,
                   spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Reorient to (closest) RAS axes, then resample linearly to ``spacing`` mm.

    image: (C, X, Y, Z) -> (C, X', Y', Z') float32, and the new (4, 4) affine.
    An oblique scan keeps its small rotation; only axis order/flips change.
    """
    mt = Orientation(axcodes="RAS", labels=RAS_LABELS)(_meta_tensor(image, affine))
    mt = Spacing(pixdim=spacing, mode="bilinear", padding_mode="border")(mt)
    return mt.numpy().astype(np.float32, copy=False), mt.affine.numpy().astype(np.float64)


def resample_to_grid(array: np.ndarray, affine: np.ndarray, dst_affine: np.ndarray,
                     dst_shape: tuple[int, int, int], order: int, fill: float = 0.0) -> np.ndarray:
    """Resample (X, Y, Z) ``array`` on ``affine`` onto the grid (``dst_affine``, ``dst_shape``).

    Matching is by world coordinates; ``order`` 1 = linear, 0 = nearest (label maps).
    Points outside the source grid get ``fill``. Returns float32 (X', Y', Z').
    """
    if order not in MODES:
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    src = np.asarray(array, dtype=np.float32)
    stacked = np.stack([src, np.ones_like(src)])  # (2, X, Y, Z): the values and a coverage mask
    out = SpatialResample(mode=MODES[order], padding_mode="zeros")(
        _meta_tensor(stacked, affine),
        dst_affine=torch.as_tensor(dst_affine, dtype=torch.float64),
        spatial_size=tuple(int(s) for s in dst_shape)).numpy()
    values, covered = out[0].astype(np.float32, copy=False), out[1]
    # Any fill (NaN included): points not wholly inside the source grid take it.
    values[covered < 1 - COVER_TOL] = np.float32(fill)
    return values


def crop_window(mask: np.ndarray, margin: tuple[int, int, int], min_shape: tuple[int, int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of ``mask`` (X, Y, Z) grown by ``margin`` voxels and to ``min_shape``.

    Returns (start, stop) int arrays; the window may reach outside the array (padding).
    An empty mask gives the whole array (grown to ``min_shape``).
    """
    shape = np.array(mask.shape)
    if mask.any():
        nz = np.nonzero(mask)
        start = np.array([ix.min() for ix in nz]) - np.asarray(margin)
        stop = np.array([ix.max() + 1 for ix in nz]) + np.asarray(margin)
        start, stop = np.maximum(start, 0), np.minimum(stop, shape)
    else:
        start, stop = np.zeros(3, int), shape.copy()
    grow = np.maximum(np.asarray(min_shape) - (stop - start), 0)
    return (start - grow // 2).astype(int), (stop + grow - grow // 2).astype(int)


def take_window(array: np.ndarray, start: np.ndarray, stop: np.ndarray, fill: float = 0) -> np.ndarray:
    """array[..., start:stop] over the last three axes, padding with ``fill`` outside it.

    (..., X, Y, Z) -> (..., stop - start).
    """
    lead = array.shape[:-3]
    out = np.full(lead + tuple(int(b - a) for a, b in zip(start, stop)), fill, dtype=array.dtype)
    src, dst = [], []
    for a, b, n in zip(start, stop, array.shape[-3:]):
        lo, hi = max(a, 0), min(b, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    out[(...,) + tuple(dst)] = array[(...,) + tuple(src)]
    return out


def shift_affine(affine: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Affine of the sub-grid whose voxel 0 is voxel ``start`` of ``affine``'s grid."""
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out
