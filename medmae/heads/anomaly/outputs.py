"""What ``score`` writes per case, on the ORIGINAL scan's grid and affine (NIfTI overlays).

    OUT/cases/<case_id>/
      anomaly.nii.gz         the anomaly map (score.map), float32, 0 outside the body
      spread.nii.gz          std of the residual over the draws that hid each voxel
      reconstruction.nii.gz  what the model expected, in the scan's own intensity units
                             (reconstruction_<c>.nii.gz per channel for multi-channel scans)
      features.nii.gz        with score.feature_bank: the feature-space map (nearest bank token)
      baseline.nii.gz        the intensity baseline (robust z-score), combined.nii.gz the mix
      body.nii.gz            the body/brain mask the maps are restricted to (uint8)
      binary.nii.gz          once calibrated: map > healthy threshold, small components removed
                             (thresholded on the model grid, mapped here by nearest neighbour)
      grid.npz               the maps, body and binary on the model grid, as thresholded
                             (what ``evaluate`` scores; :mod:`medmae.heads.anomaly.grid`)
      case.json              case score(s), healthy percentiles, settings digest, model digest
      preview.npz            the preprocessed scan, maps, body and label (float16/uint8) for the report

The folder is written whole under a temporary name, then renamed (a killed run leaves
no half-written case folder, only a hidden ``.<case_id>.*.tmp`` that the next run removes).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_dir, atomic_write, atomic_write_text
from medmae.heads.anomaly.calibration import Calibration, binary_map
from medmae.heads.anomaly.case import CaseMaps
from medmae.heads.anomaly.case_extras import write_extras
from medmae.heads.anomaly.grid import GRID_FILE, MAP_FILES, save_grid
from medmae.preprocess.inverse import save_on_source_grid


def raw_units(values: np.ndarray, norm: dict) -> np.ndarray:
    """Normalised channel -> the scan's own units (undoes the CT window / MR z-score)."""
    if norm.get("kind") == "ct_window":
        lo, hi = norm["window"]
        return lo + values * (hi - lo)
    if norm.get("kind") == "zscore":
        return values * norm["std"] + norm["mean"]
    return values


def _expected(cm: CaseMaps) -> np.ndarray:
    """(C, X, Y, Z) reconstruction where scored, the scan itself elsewhere."""
    return np.where(cm.stats.covered[None], cm.stats.expected, cm.image)


def binary_for(cm: CaseMaps, cal: Calibration, fpr: float, name: str = "model") -> np.ndarray:
    spacing = tuple(float(s) for s in cm.meta["spacing"])
    return binary_map(cm.maps[name], cm.body, cal.threshold(name, fpr), spacing, cal.min_component_mm3)


def write_case(cm: CaseMaps, folder: Path, record: dict, cal: Calibration | None, fpr: float) -> dict:
    """Write every output of one case under ``folder`` (whole, then renamed); returns the case record."""
    with atomic_dir(folder) as tmp:
        return _write_files(cm, tmp, record, cal, fpr)


def _write_files(cm: CaseMaps, folder: Path, record: dict, cal: Calibration | None, fpr: float) -> dict:
    meta = cm.meta
    for name, arr in cm.maps.items():
        save_on_source_grid(arr, meta, folder / MAP_FILES[name])
    save_on_source_grid(cm.stats.spread.mean(0) * cm.body, meta, folder / "spread.nii.gz")
    save_on_source_grid(cm.body.astype(np.uint8), meta, folder / "body.nii.gz", order=0, dtype=np.uint8)
    expected = _expected(cm)
    for c, norm in enumerate(meta["normalisation"]):
        name = "reconstruction.nii.gz" if len(expected) == 1 else f"reconstruction_{c}.nii.gz"
        save_on_source_grid(raw_units(expected[c], norm), meta, folder / name)
    binary = None
    if cal is not None:
        binary = binary_for(cm, cal, fpr)
        save_on_source_grid(binary.astype(np.uint8), meta, folder / "binary.nii.gz", order=0, dtype=np.uint8)
        record["binary_fpr"] = fpr
        record["binary_voxels"] = int(binary.sum())
    write_extras(cm, folder, binary)  # acquisition.json (+ DICOM objects for DICOM inputs): report, viewer
    save_grid(folder / GRID_FILE, cm.maps, cm.body, binary, meta)
    _write_preview(cm, folder / "preview.npz", binary)
    atomic_write_text(folder / "case.json", json.dumps(record, indent=1) + "\n")
    return record


def _write_preview(cm: CaseMaps, path: Path, binary: np.ndarray | None) -> None:
    arrays = {"image": cm.image[0].astype(np.float16), "body": cm.body.astype(np.uint8),
              "spacing": np.asarray(cm.meta["spacing"], np.float32)}
    arrays.update({f"map_{k}": v.astype(np.float16) for k, v in cm.maps.items()})
    if cm.label is not None:
        arrays["label"] = (cm.label > 0).astype(np.uint8)
    if binary is not None:
        arrays["binary"] = binary.astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
