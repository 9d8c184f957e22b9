"""Comparing voxel grids, and moving a volume onto another grid by world coordinates."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from medmae.io.errors import ScanError
from medmae.io.volume import Volume


def same_geometry(a: Volume, b: Volume, atol_mm: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` share shape and their voxel centres agree within ``atol_mm``.

    The affines are compared through the world position of the 8 corner voxels, so a
    tolerance in millimetres means the same thing for every voxel size.
    """
    if a.shape != b.shape:
        return False
    return bool(np.max(np.abs(_corners(a) - _corners(b))) <= atol_mm)


def check_same_geometry(image: Volume, other: Volume, what: str = "label map", atol_mm: float = 1e-3) -> None:
    """Raise ScanError (naming both files) when ``other`` is not on ``image``'s voxel grid."""
    if same_geometry(image, other, atol_mm):
        return
    if image.shape != other.shape:
        detail = f"shape {other.shape} differs from the image's {image.shape}"
    else:
        shift = float(np.max(np.abs(_corners(image) - _corners(other))))
        detail = f"voxel grid is {shift:.3g} mm away from the image's (orientation/origin/spacing differ)"
    raise ScanError(other.path, f"{what} does not match its image {image.path}: {detail}")


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


def _corners(v: Volume) -> np.ndarray:
    """(8, 3) world positions of the corner voxel centres."""
    ext = np.array(v.shape) - 1
    idx = np.array([[i, j, k, 1] for i in (0, ext[0]) for j in (0, ext[1]) for k in (0, ext[2])], dtype=np.float64)
    return (idx @ v.affine.T)[:, :3]
