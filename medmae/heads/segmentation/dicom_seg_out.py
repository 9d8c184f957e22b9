"""A DICOM SEG of a segmentation for a case read from a DICOM series: one segment per class,
named after it, referencing the source series (see medmae.export.dicom_derived)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.export.dicom_derived import DicomExportError, segmentation, source_headers
from medmae.io.manifest import Case
from medmae.io.paths import split_series_path


def is_dicom_case(case: Case) -> bool:
    """True when the case's image is a DICOM series folder."""
    return split_series_path(case.image[0])[0].is_dir()


def write_label_seg(case: Case, nifti: Path, classes: dict[str, list[int]], path: Path) -> Path:
    """``nifti``: the case's label map on the source grid (written label ids) -> DICOM SEG at ``path``."""
    headers = source_headers(case.image[0])
    ids = np.rint(np.asarray(nib.load(nifti).dataobj)).astype(np.int64)
    segments = np.zeros(ids.shape, np.uint16)
    for n, written in enumerate((v[0] for v in classes.values()), 1):
        segments[ids == written] = n
    if ids.shape[2] != len(headers):
        raise DicomExportError(f"label map has {ids.shape[2]} slices, the series {len(headers)}")
    return segmentation(headers, segments, list(classes), path, "medmae segmentation")
