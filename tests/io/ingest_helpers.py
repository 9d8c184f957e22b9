"""Shared paths and builders for ingestion tests (real scans from tests/data).

Imported as ``from ingest_helpers import ...`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data"
DICOM = DATA / "dicom"
J2K = DICOM / "ct_abdomen_j2k_series"
THREE = DICOM / "ct_3slice_series"
# Header values of the real DICOM files that must never reach a manifest, log or report.
IDENTITY_STRINGS = ("JANCT000", "99000", "20030417", "20221208", "03086212",
                    "1.2.392.200103.20080913.113635", "1.3.12.2.1107.5.1.4.60064")


def copy_series(src: Path, dst: Path) -> Path:
    """Copy a DICOM series folder (files only) to ``dst``; returns ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        shutil.copy(f, dst / f.name)
    return dst


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as NIfTI (identity affine unless given); returns ``path``."""
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path
