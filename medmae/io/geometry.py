"""Comparing voxel grids, and moving a volume onto another grid by world coordinates."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from medmae.io.errors import ScanError
from medmae.io.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM / ITK LPS world coordinates -> RAS (flip x and y)."""
GRID_ATOL_MM = 0.01  # voxel centres closer than this are the same point (float32 affines drift)


def same_geometry(a: Volume, b: Volume, atol_mm: float = GRID_ATOL_MM) -> bool:
    """True when ``a`` and ``b`` share shape and their voxel centres agree within ``atol_mm``.

    The affines are compared through the world position of the 8 corner voxels, so a
    tolerance in millimetres means the same thing for every voxel size.
    """
    if a.shape != b.shape:
        return False
    return bool(np.max(np.abs(_corners(a) - _corners(b))) <= atol_mm)


def same_grid(a: Volume, b: Volume, atol_mm: float = GRID_ATOL_MM) -> bool:
    """True when ``a`` and ``b`` hold the same voxel centres, perhaps in another axis order or
    direction (a label map stored LAS over an LPS image): an exact reorientation maps one onto
    the other, with no interpolation.
    """
    if sorted(a.shape) != sorted(b.shape):
        return False
    rot = (np.linalg.inv(b.affine) @ a.affine)[:3, :3]  # a voxel axes in b voxel units
    perm = np.rint(rot)
    if np.max(np.abs(rot - perm)) * max(a.shape) > 0.5 or not _signed_permutation(perm):
        return False
    ca, cb = _corners(a), _corners(b)
    nearest = np.max(np.abs(ca[:, None, :] - cb[None, :, :]), axis=-1).min(axis=1)  # (8,)
    return bool(np.all(nearest <= atol_mm))


def check_same_grid(image: Volume, other: Volume, what: str = "label map", atol_mm: float = GRID_ATOL_MM) -> None:
    """Raise ScanError (naming both files) unless ``other`` covers ``image``'s voxels exactly
    (see :func:`same_grid`)."""
    if same_grid(image, other, atol_mm):
        return
    if sorted(image.shape) != sorted(other.shape):
        detail = f"shape {other.shape} differs from the image's {image.shape}"
    else:
        shift = float(np.max(np.abs(_corners(image) - _corners(other))))
        detail = f"its voxel grid lies up to {shift:.3g} mm from the image's (orientation, origin or spacing differ)"
    raise ScanError(other.path, f"{what} does not match its image {image.path}: {detail}")


def align_to(image: Volume, other: Volume, what: str = "label map", atol_mm: float = GRID_ATOL_MM) -> Volume:
    """``other`` on ``image``'s exact voxel grid: as is, or reoriented (axes permuted/flipped).

    Raises ScanError when the grids differ in any other way (resample explicitly with
    :func:`resample_to` if that is wanted). Returns a Volume of shape image.shape.
    """
    if same_geometry(image, other, atol_mm):
        return other
    check_same_grid(image, other, what, atol_mm)
    return resample_to(other, image, order=0)


def resample_to(src: Volume, target: Volume, order: int = 0, cval: float = 0.0) -> Volume:
    """``src`` sampled on ``target``'s voxel grid, matching voxels by world (RAS mm) position.

    order 0 (nearest) for label maps keeps the label values and dtype; order 1 gives float32.
    Voxels of ``target`` outside ``src`` get ``cval``. Returns array of shape target.shape.
    """
    vox = np.linalg.inv(src.affine) @ target.affine  # target voxel -> src voxel
    arr = src.array if order == 0 else src.array.astype(np.float32)
    out = ndimage.affine_transform(arr, vox[:3, :3], offset=vox[:3, 3], output_shape=target.shape,
                                   order=order, mode="grid-constant", cval=cval)
    return Volume(array=out, affine=target.affine.copy(), path=src.path, meta=dict(src.meta))


def orientation(vol: Volume) -> str:
    """Three-letter orientation code of the voxel axes, e.g. 'RAS', 'LPS', 'PSR'."""
    return "".join(nib.aff2axcodes(vol.affine))


def _signed_permutation(m: np.ndarray) -> bool:
    return bool(np.all(np.abs(m).sum(axis=0) == 1) and np.all(np.abs(m).sum(axis=1) == 1))


def _corners(v: Volume) -> np.ndarray:
    """(8, 3) world positions of the corner voxel centres."""
    ext = np.array(v.shape) - 1
    idx = np.array([[i, j, k, 1] for i in (0, ext[0]) for j in (0, ext[1]) for k in (0, ext[2])], dtype=np.float64)
    return (idx @ v.affine.T)[:, :3]


TILT_WARN_DEG = 0.5
"""A slice step further than this off the slice normal is a gantry tilt worth a warning."""


def gantry_tilt(iop, step: np.ndarray) -> float:
    """Degrees between a DICOM slice step (3,) and the normal of the slices' ImageOrientationPatient
    (6 direction cosines); 0 for an upright stack."""
    iop = np.asarray(iop, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    norm = float(np.linalg.norm(step)) * float(np.linalg.norm(normal))
    if norm == 0:
        return 0.0
    return float(np.degrees(np.arccos(min(1.0, abs(float(np.asarray(step) @ normal)) / norm))))
