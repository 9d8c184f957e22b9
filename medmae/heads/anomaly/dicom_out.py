"""DICOM outputs of a case scored from a DICOM series: the anomaly map as a Parametric Map, the
binary map (calibrated runs) as a SEG, both referencing the source series (see
:mod:`medmae.export.dicom_derived` for what is copied from its headers)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.export.dicom_derived import parametric_map, segmentation, source_headers
from medmae.heads.anomaly.case import CaseMaps

PM_NAME, SEG_NAME = "anomaly_map.dcm", "binary_seg.dcm"


def write_case_dicom(cm: CaseMaps, out: Path, binary: np.ndarray | None) -> list[str]:
    """Write OUT/anomaly_map.dcm (+ OUT/binary_seg.dcm) from the case's source-grid NIfTIs beside ``out``;
    returns the file names written."""
    headers = source_headers(cm.case.image[0])
    folder = out.parent
    amap = np.asarray(nib.load(folder / "anomaly.nii.gz").dataobj, np.float32)
    written = [parametric_map(headers, amap, out / PM_NAME, "anomaly",
                              "MAE reconstruction error per voxel, normalised intensity units").name]
    if binary is not None:
        flagged = (np.asarray(nib.load(folder / "binary.nii.gz").dataobj) > 0).astype(np.uint8)
        written.append(segmentation(headers, flagged, ["anomaly (binary map)"], out / SEG_NAME,
                                    "medmae binary anomaly map (healthy-calibrated)", "lesion").name)
    return written
