"""Crafted headers for the size, scaling and geometry guards (issue 19, items 2 and 9).

Every file is a few hundred bytes: a header that claims a huge image, or odd scaling, with
little or no data behind it, so nothing big is ever allocated by the tests.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

BOMB_SHAPE = (2048, 2048, 2048)  # 16 GiB of int16


def nifti_header(shape, dtype=np.int16, affine=None) -> nib.Nifti1Header:
    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    h.set_sform(np.eye(4) if affine is None else affine, code=2)
    h.set_qform(np.eye(4) if affine is None else affine, code=2)
    h["vox_offset"] = 352
    return h


def nifti_bomb(path: Path, shape=BOMB_SHAPE, payload: bytes = b"\0" * 1024) -> Path:
    """A .nii or .nii.gz whose header claims ``shape`` over a tiny payload."""
    data = nifti_header(shape).binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def gzip_overflow(path: Path, shape=(16, 16, 16), extra: int = 1 << 20) -> Path:
    """A .nii.gz whose stream holds ``extra`` bytes beyond what its small header needs."""
    needs = int(np.prod(shape)) * 2
    data = nifti_header(shape).binaryblock + b"\0" * 4 + b"\1" * needs + b"\0" * extra
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path


def nrrd_bomb(path: Path) -> Path:
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4096 4096 4096\nencoding: raw\nendian: little\n"
                     b"space directions: (1,0,0) (0,1,0) (0,0,1)\n\n" + b"\0" * 64)
    return path


def mha_bomb(path: Path) -> Path:
    path.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 4096 4096 4096\nElementType = MET_FLOAT\n"
                     b"ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n" + b"\0" * 64)
    return path


def mhd_pointing(path: Path, data_file: str, shape=(8, 8, 8)) -> Path:
    """An .mhd whose ElementDataFile is ``data_file`` (as written)."""
    dims = " ".join(str(s) for s in shape)
    path.write_text(f"ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementType = MET_UCHAR\n"
                    f"ElementSpacing = 1 1 1\nElementDataFile = {data_file}\n")
    return path


def nhdr_pointing(path: Path, data_file: str, shape=(8, 8, 8)) -> Path:
    dims = " ".join(str(s) for s in shape)
    path.write_text(f"NRRD0004\ntype: uchar\ndimension: 3\nspace: left-posterior-superior\nsizes: {dims}\nencoding: raw\nendian: little\n"
                    f"space directions: (1,0,0) (0,1,0) (0,0,1)\ndata file: {data_file}\n\n")
    return path


def varied(shape=(16, 16, 16), dtype=np.int16, scale: float = 1.0) -> np.ndarray:
    """A small image with real variation (a blob over noise)."""
    rng = np.random.default_rng(0)
    a = rng.normal(100, 10, shape)
    a[4:12, 4:12, 4:12] += 300
    return (a * scale).astype(dtype)


def scaled_nifti(path: Path, slope: float, inter: float = 0.0) -> Path:
    """A small int16 image whose header scales it by ``slope`` and ``inter`` (as stored)."""
    h = nifti_header((16, 16, 16))
    h["scl_slope"], h["scl_inter"] = slope, inter
    data = h.binaryblock + b"\0" * 4 + varied().tobytes(order="F")
    path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
    return path


def zero_pixdim(path: Path) -> Path:
    """Neither qform nor sform, and pixdim 0 along the second axis."""
    h = nifti_header((16, 16, 16))
    h.set_qform(None, code=0)
    h.set_sform(None, code=0)
    h["pixdim"] = [1, 1, 0, 1, 1, 1, 1, 1]
    path.write_bytes(h.binaryblock + b"\0" * 4 + varied().tobytes(order="F"))
    return path
