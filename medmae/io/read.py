"""`read_volume`: any supported scan (file or DICOM folder) into a validated :class:`Volume`.

NIfTI is read with nibabel (its affine is already voxel -> RAS mm). NRRD / MHA / MHD are read
with SimpleITK, whose LPS geometry is converted to RAS. A folder is read as one DICOM series
(see :mod:`medmae.io.dicom`). The file readers live in :mod:`medmae.io.image_file`; every
reader ends in :func:`medmae.io.volume.validate`, so a Volume that comes back is 3D,
non-empty, finite, with an invertible affine.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmae.io.dicom import read_series
from medmae.io.dicom_seg import read_dicom_seg
from medmae.io.errors import ScanError
from medmae.io.header_checks import raw_nifti_header
from medmae.io.image_file import check_reachable, read_image_file
from medmae.io.paths import ITK_SUFFIXES, NIFTI_SUFFIXES, SERIES_SEP, split_series_path
from medmae.io.totalseg import is_totalseg_folder, read_totalseg
from medmae.io.volume import Volume, validate


def scan_format(path: str | os.PathLike) -> str | None:
    """'nifti', 'itk', 'dicom' (a folder), 'dicom_file' (.dcm) or None when not a scan by its name."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(".dcm"):
        return "dicom_file"
    return None


def read_volume(path: str | os.PathLike, series: int | str | None = None) -> Volume:
    """Read one 3D scan: .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd, a DICOM series folder, a DICOM SEG,
    a TotalSegmentator output folder (its organ masks as one label map, :mod:`medmae.io.totalseg`).

    ``series`` picks one series (index or key, see :func:`medmae.io.dicom.find_series`) when a
    folder holds several; ``"folder#key"`` does the same inside the path (manifests use it).
    Raises :class:`ScanError` naming the file and the problem.
    Returns a Volume with array (X, Y, Z) in native dtype and a voxel -> RAS mm affine.
    """
    path, key = split_series_path(path)
    series = key if series is None else series
    check_reachable(path)
    kind = scan_format(path)
    if kind == "dicom" and is_totalseg_folder(path):
        array, affine, meta = read_totalseg(path)
        return validate(Volume(array=array, affine=affine, path=path, meta=meta))
    if kind == "dicom":
        return read_series(path, series=series)
    if kind == "dicom_file":
        return read_dicom_seg(path)
    if kind is None:
        raise ScanError(path, f"unsupported file type (expected one of {NIFTI_SUFFIXES + ITK_SUFFIXES} or a DICOM folder)")
    return read_image_file(path, key)


def channel_path(path: str | os.PathLike, channel: int) -> str:
    """The manifest path of one channel of a 4D file whose 4th axis is channels: ``x.nii.gz#c1``."""
    return f"{path}{SERIES_SEP}c{channel}"


def channels_in_header(path: str | os.PathLike) -> int:
    """Number of volumes on the 4th axis of a NIfTI file, from its header alone (1 for 3D)."""
    try:
        shape = raw_nifti_header(Path(path)).get_data_shape()
    except Exception:  # read_volume reports an unreadable file with its real cause
        return 1
    return int(shape[3]) if len(shape) >= 4 and all(s == 1 for s in shape[4:]) else 1
