"""Checks made from a scan's header, before any voxel is read or decompressed.

- Size: the header's voxel count x bytes per voxel against the limit of
  :mod:`medmae.io.limits` (a 4.7 MB .nii.gz may hold 1 GiB of zeros; a header may claim
  any shape). A .nii.gz is then decompressed with a cap: a stream that holds more than its
  header needs is refused, not read to the end.
- NIfTI geometry: a zero or non-finite voxel size (pixdim) with neither qform nor sform
  leaves no geometry at all (nibabel would silently make it 1 mm).
- NIfTI scaling: scl_slope / scl_inter that take the stored values to magnitudes no scanner
  produces (``scl_slope=1e38``) are named as such, not left to overflow later.
- Detached data (.mhd ``ElementDataFile``, .nhdr ``data file``): the data file must lie in
  the header's folder (or below) unless ``--allow-outside-data``.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.io.errors import ScanError
from medmae.io.limits import OUTSIDE_DATA_ENV, check_image_size, describe, outside_data_allowed
from medmae.io.sanity import ABSURD_FLOAT

GZIP_SLACK = 16 << 20
"""Bytes a .nii.gz may hold beyond what its header needs (extensions, padding)."""


def raw_nifti_header(path: Path) -> nib.Nifti1Header:
    """The NIfTI-1 or -2 header exactly as stored (nibabel's load fixes zero pixdims)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(540)
    size_le, size_be = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    klass = nib.Nifti2Header if 540 in (size_le, size_be) else nib.Nifti1Header
    return klass.from_fileobj(io.BytesIO(head[: klass.template_dtype.itemsize]), check=False)  # no extensions


def nifti_needs(header: nib.Nifti1Header) -> int:
    """Bytes a file with this header needs: voxel offset + voxel data."""
    shape = header.get_data_shape()
    return int(header["vox_offset"]) + int(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize


def check_nifti_header(path: Path, header: nib.Nifti1Header) -> None:
    """Size against the limit; a geometry-less header (zero pixdim, no q/sform). Raises ScanError."""
    try:
        shape, dtype = header.get_data_shape(), header.get_data_dtype()
    except Exception as e:  # nibabel's zoo of header errors
        raise ScanError(path, f"not a readable NIfTI header ({' '.join(str(e).split())[:200]})") from None
    problem = check_image_size(shape, dtype.itemsize, str(dtype))
    if problem:
        raise ScanError(path, problem)
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        zooms = np.asarray(header["pixdim"][1:4], dtype=np.float64)
        bad = [i for i, z in enumerate(zooms) if not np.isfinite(z) or z == 0]
        if bad:
            raise ScanError(path, f"voxel size (pixdim) {zooms[bad[0]]:g} along axis {bad[0]} and neither qform "
                                  "nor sform: the image has no geometry at all; fix the header (set the voxel "
                                  "sizes or an sform)")


def read_gzip_capped(path: Path, needs: int) -> bytes:
    """Decompress a .nii.gz, refusing a stream longer than ``needs`` + slack (a bomb).

    CRC and length are checked whenever the stream ends within the cap (gzip does so at EOF).
    """
    cap = needs + GZIP_SLACK
    with gzip.open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ScanError(path, f"gzip stream decompresses to more than {describe(cap)} while its header needs "
                              f"{describe(needs)}: refused (a decompression bomb, or junk after the image)")
    return data


def check_scaling(path: Path, raw: np.ndarray, slope: float | None, inter: float | None) -> None:
    """Raise ScanError when scl_slope / scl_inter take ``raw`` to absurd magnitudes."""
    s = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    b = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if s == 1.0 and b == 0.0 or raw.size == 0:
        return
    peak_raw = max(abs(float(raw.min())), abs(float(raw.max())))
    peak = abs(s) * peak_raw + abs(b)
    if peak > ABSURD_FLOAT or abs(s) > ABSURD_FLOAT:
        raise ScanError(path, f"absurd intensity scaling: scl_slope={s:g}, scl_inter={b:g} take the stored values "
                              f"(up to {peak_raw:g}) to magnitudes up to {peak:.3g}; the header is corrupt "
                              "(reset scl_slope to 1 and scl_inter to 0 if the stored values are right)")


DATA_FILE = re.compile(r"^(?:ElementDataFile\s*=|data ?file\s*:)\s*(.+?)\s*$", flags=re.M | re.I)


def data_file_name(header: Path) -> str | None:
    """The data file an .mhd ('ElementDataFile = x.raw') or .nhdr ('data file: x.raw') names,
    as written, or None (data inside, LOCAL, LIST, unreadable)."""
    if header.suffix.lower() not in (".mhd", ".nhdr"):
        return None
    try:
        with open(header, "rb") as f:
            text = f.read(64 << 10).decode("latin-1")
    except OSError:
        return None
    m = DATA_FILE.search(text)
    if not m or m.group(1).split()[0].upper() in ("LOCAL", "LIST"):
        return None
    return m.group(1).split()[0]


def detached_data(header: Path) -> Path | None:
    """The data file of an .mhd / .nhdr header, relative to the header's folder (or None)."""
    name = data_file_name(header)
    return None if name is None else header.parent / name


def check_detached_data(header: Path) -> None:
    """Raise ScanError when ``header``'s data file resolves outside the header's folder
    (``../../outside/secret.raw``, ``/etc/passwd``) and that is not allowed."""
    name = data_file_name(header)
    if name is None or outside_data_allowed():
        return
    target = (header.parent / name).resolve()
    if not target.is_relative_to(header.parent.resolve()):
        raise ScanError(header, f"its data file {name} lies outside the header's folder; refused. Pass "
                                f"--allow-outside-data (or {OUTSIDE_DATA_ENV}=1) to read it")
