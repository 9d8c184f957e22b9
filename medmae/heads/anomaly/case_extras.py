"""What the report, the findings table and the viewer need beyond the maps (one call from ``write_case``).

    OUT/cases/<case_id>/
      acquisition.json   modality, sequence, source grid (shape, spacing, field of view), the
                         preprocessing applied and the preview grid's affine (voxel -> RAS mm);
                         no header value that identifies anyone
      dicom/             for a case read from a DICOM series: the anomaly map as a DICOM
                         Parametric Map and the binary map as a DICOM SEG (see docs/anomaly.md)

A DICOM export that fails is recorded in acquisition.json (``dicom_error``) and logged
without header values; the NIfTI outputs stand.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write_text
from medmae.export.dicom_derived import export_failure
from medmae.heads.anomaly.case import CaseMaps
from medmae.io.paths import split_series_path

logger = logging.getLogger(__name__)


def acquisition(cm: CaseMaps) -> dict:
    """The non-identifying acquisition and preprocessing facts of a scored case."""
    meta = cm.meta
    spacing = [float(s) for s in meta["source_spacing"]]
    shape = [int(s) for s in meta["source_shape"]]
    return {
        "modality": cm.case.modality, "sequence": cm.case.sequence or "",
        "channels": len(cm.case.image), "source_shape": shape, "source_spacing": spacing,
        "field_of_view_mm": [round(n * s, 2) for n, s in zip(shape, spacing)],
        "source_affine": np.asarray(meta["source_affine"], float).tolist(),
        "preview_affine": np.asarray(meta["affine"], float).tolist(),
        "preview_shape": [int(s) for s in meta["shape"][-3:]],
        "preprocessing": {"orientation": meta.get("orientation", "RAS"), "spacing": [float(s) for s in meta["spacing"]],
                          "normalisation": [n.get("kind", "") for n in meta["normalisation"]],
                          "body_mask": "supplied (manifest mask column)" if cm.case.mask else "computed",
                          "crop_box": meta.get("crop_box")},
        "dicom": is_dicom_source(cm.case.image[0]),
    }


def is_dicom_source(path: str) -> bool:
    """True when the case's first image is a DICOM series folder."""
    return split_series_path(path)[0].is_dir()


def write_extras(cm: CaseMaps, folder: Path, binary: np.ndarray | None) -> dict:
    """Write acquisition.json (and the DICOM objects for a DICOM source); returns the acquisition dict."""
    info = acquisition(cm)
    if info["dicom"]:
        from medmae.heads.anomaly.dicom_out import write_case_dicom

        try:
            info["dicom_files"] = write_case_dicom(cm, folder / "dicom", binary)
        except Exception as e:  # noqa: BLE001 - the NIfTI outputs stand; say why DICOM is missing
            info["dicom_error"] = export_failure(e)
            logger.warning("case %s: DICOM outputs not written (%s)", cm.case.case_id, type(e).__name__)
    atomic_write_text(folder / "acquisition.json", json.dumps(info, indent=1) + "\n")
    return info
