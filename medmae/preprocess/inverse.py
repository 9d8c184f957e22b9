"""Map arrays on a cached case's grid back onto the original scan's grid (and save as NIfTI).

Only meta.json's ``affine`` (cached voxel -> RAS), ``source_affine`` and ``source_shape``
are used: resampling is by world coordinates, so it undoes reorientation, resampling,
cropping and padding in one step.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.atomic import atomic_write
from medmae.preprocess.spatial import resample_to_grid


def to_source_grid(array: np.ndarray, meta: dict, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """(X, Y, Z) on the cached grid -> float32 (X0, Y0, Z0) on the source scan's grid.

    ``order`` 1 = linear (images, anomaly maps), 0 = nearest (label maps). Source voxels
    outside the cached crop get ``fill``.
    """
    shape = tuple(int(s) for s in meta["shape"][-3:])
    if tuple(array.shape) != shape:
        raise ValueError(f"array shape {tuple(array.shape)} != cached grid {shape}")
    return resample_to_grid(np.asarray(array), np.asarray(meta["affine"], dtype=np.float64),
                            np.asarray(meta["source_affine"], dtype=np.float64),
                            tuple(meta["source_shape"]), order=order, fill=fill)


def save_on_source_grid(array: np.ndarray, meta: dict, path: str | os.PathLike, order: int = 1,
                        fill: float = 0.0, dtype: np.dtype | type = np.float32) -> Path:
    """Map ``array`` back with :func:`to_source_grid` and write it (atomically) as NIfTI
    with the source scan's affine, so it overlays the original scan in any viewer."""
    out = to_source_grid(array, meta, order=order, fill=fill)
    if np.dtype(dtype).kind in "iu":
        out = np.rint(out)
    img = nib.Nifti1Image(out.astype(dtype), np.asarray(meta["source_affine"], dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    data = img.to_bytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
