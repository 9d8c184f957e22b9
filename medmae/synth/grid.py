"""Voxel grids of the phantoms: their affine and the world points of each voxel."""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import numpy as np

ORIENTATION_SIGNS = {"RAS": (1.0, 1.0, 1.0), "LPS": (-1.0, -1.0, 1.0)}


def make_affine(shape: Sequence[int], spacing: Sequence[float], orientation: Literal["RAS", "LPS"],
                rotation: np.ndarray, centre: Sequence[float]) -> np.ndarray:
    """(4, 4) voxel -> RAS mm affine whose grid centre lands on ``centre``.

    ``orientation`` says where the voxel axes point (LPS: i towards the patient's left,
    j towards posterior, as in DICOM-derived CT); ``rotation`` (3, 3) tilts the grid
    (an oblique acquisition) around the grid centre.
    """
    if orientation not in ORIENTATION_SIGNS:
        raise ValueError(f"orientation must be one of {list(ORIENTATION_SIGNS)}, got {orientation!r}")
    m = rotation @ np.diag(ORIENTATION_SIGNS[orientation]) @ np.diag(np.asarray(spacing, dtype=np.float64))
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = np.asarray(centre, dtype=np.float64) - m @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def world_points(affine: np.ndarray, shape: Sequence[int], x0: int, x1: int) -> np.ndarray:
    """World mm of the voxels in slab ``x0:x1``: (3, x1 - x0, Y, Z) float32."""
    i, j, k = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(shape[1], dtype=np.float32),
                          np.arange(shape[2], dtype=np.float32), indexing="ij")
    idx = np.stack([i, j, k])
    m = affine[:3, :3].astype(np.float32)
    t = affine[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)
    return np.tensordot(m, idx, axes=1) + t


def slabs(shape: Sequence[int], max_voxels: int = 1 << 22) -> Iterator[tuple[int, int]]:
    """(x0, x1) slabs along the first axis holding at most ``max_voxels`` voxels each."""
    step = max(1, max_voxels // int(shape[1] * shape[2]))
    for x0 in range(0, int(shape[0]), step):
        yield x0, min(int(shape[0]), x0 + step)
