"""The in-memory image type shared by every stage, and :func:`validate`, the check every reader ends in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medmae.io.errors import ScanError

MIN_VOXEL_MM, MAX_VOXEL_MM = 1e-3, 100.0
"""Voxel sizes outside this range are header faults (1e20 mm would pass as 'no body found')."""


@dataclass
class Volume:
    """One 3D scan with its world geometry.

    array:  (X, Y, Z) voxel values in index order i, j, k (native dtype, e.g. int16 HU).
    affine: (4, 4) float64, maps voxel index (i, j, k, 1) to RAS+ world millimetres
            (the NIfTI / nibabel convention; SimpleITK's LPS is converted on reading).
    path:   the source: a file, or the folder of a DICOM series.
    meta:   non-identifying facts only (modality, sequence hints, dicom series number/uid
            hash...). Never patient names, ids or dates.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)


def validate(vol: Volume) -> Volume:
    """Check a Volume is usable; squeeze trailing singleton axes. Raises ScanError."""
    arr = np.asarray(vol.array)
    if arr.size == 0:
        raise ScanError(vol.path, f"zero-size image of shape {tuple(arr.shape)}")
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        kind = "2D" if arr.ndim == 2 else f"{arr.ndim}D"
        raise ScanError(vol.path, f"{kind} image of shape {tuple(arr.shape)} where a 3D volume is expected")
    if sum(s > 1 for s in arr.shape) < 3:
        raise ScanError(vol.path, f"2D image of shape {tuple(arr.shape)} where a 3D volume is expected")
    if arr.dtype.kind not in "biuf":
        raise ScanError(vol.path, f"unsupported voxel type {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ScanError(vol.path, f"{bad} non-finite voxel(s) (NaN or Inf)")
    affine = np.asarray(vol.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ScanError(vol.path, "invalid geometry: voxel-to-world affine is missing, non-finite or singular")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    odd = [i for i, s in enumerate(spacing) if not MIN_VOXEL_MM <= s <= MAX_VOXEL_MM]
    if odd:
        i = odd[0]
        raise ScanError(vol.path, f"voxel size {spacing[i]:.3g} mm along axis {i}: no scanner makes voxels outside "
                                  f"[{MIN_VOXEL_MM:g}, {MAX_VOXEL_MM:g}] mm (wrong units or a corrupt header)")
    return Volume(array=arr, affine=affine, path=vol.path, meta=dict(vol.meta))
