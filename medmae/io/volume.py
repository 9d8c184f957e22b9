"""The in-memory image type shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
