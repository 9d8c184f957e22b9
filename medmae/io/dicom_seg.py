"""DICOM SEG (segmentation object) into a label Volume in world space, with pydicom only.

Each frame of a SEG is one segment on one plane: its PlanePositionSequence gives the plane's
ImagePositionPatient, its SegmentIdentificationSequence the segment number. Frames are put on
a regular grid along the slice normal (frames of empty planes may be absent), and each
segment number becomes that label value (where segments overlap, the higher number wins).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medmae.io.dicom import plane_affine, quiet_pydicom
from medmae.io.errors import ScanError
from medmae.io.volume import Volume, validate

GRID_TOL_MM = 0.05


def read_dicom_seg(path: str | os.PathLike) -> Volume:
    """Read a DICOM SEG file: array (X, Y, Z) uint8/uint16 labels (segment numbers), RAS affine.

    ``meta['segments']`` maps label value -> segment label text (e.g. {1: 'Liver'}).
    """
    path = Path(path)
    ds = _open(path)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    frames = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []) or [])
    if not frames:
        raise ScanError(path, "SEG has no PerFrameFunctionalGroupsSequence")
    iop = np.array(_functional(shared, frames[0], "PlaneOrientationSequence", "ImageOrientationPatient", path), float)
    measures = _functional_item(shared, frames[0], "PixelMeasuresSequence")
    if measures is None or not getattr(measures, "PixelSpacing", None):
        raise ScanError(path, "SEG lacks PixelMeasuresSequence/PixelSpacing")
    positions = np.array([_frame_position(f, path) for f in frames])  # (F, 3) LPS
    segments = np.array([_frame_segment(shared, f, path) for f in frames])  # (F,)
    masks = _frame_masks(ds, path)  # (F, rows, cols) bool
    if masks.shape[0] != len(frames):
        raise ScanError(path, f"SEG has {masks.shape[0]} frames of pixels but {len(frames)} frame descriptions")
    normal = np.cross(iop[:3], iop[3:])
    slice_k, step = _grid(positions, normal, measures, path)
    origin = positions[int(np.argmin(positions @ normal))]
    labels = np.zeros((masks.shape[2], masks.shape[1], int(slice_k.max()) + 1),
                      dtype=np.uint8 if segments.max() < 256 else np.uint16)
    for f in np.argsort(segments, kind="stable"):  # higher segment numbers painted last
        labels[..., slice_k[f]][masks[f].T] = segments[f]
    affine = plane_affine(iop, measures.PixelSpacing, normal * step, origin)
    names = {int(s.SegmentNumber): str(getattr(s, "SegmentLabel", "")) for s in getattr(ds, "SegmentSequence", [])}
    return validate(Volume(array=labels, affine=affine, path=path,
                           meta={"modality": "SEG", "segments": names}))


def _open(path: Path) -> Dataset:
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(str(path))
    except Exception as e:
        raise ScanError(path, f"not a readable DICOM file ({' '.join(str(e).split())[:200]})") from None
    if str(getattr(ds, "Modality", "")) != "SEG":
        raise ScanError(path, f"a single DICOM file that is not a SEG (Modality {str(getattr(ds, 'Modality', '')) or 'missing'}); "
                              "pass the folder of its series instead")
    return ds


def _frame_masks(ds: Dataset, path: Path) -> np.ndarray:
    """(F, rows, cols) bool: BINARY frames as stored, FRACTIONAL ones thresholded at one half."""
    try:
        with quiet_pydicom():
            px = np.asarray(ds.pixel_array)
    except Exception as e:
        raise ScanError(path, f"cannot decode SEG pixels ({' '.join(str(e).split())[:200]})") from None
    if px.ndim == 2:
        px = px[None]
    if str(getattr(ds, "SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        return px >= 0.5 * float(getattr(ds, "MaximumFractionalValue", 255) or 255)
    return px > 0


def _grid(positions: np.ndarray, normal: np.ndarray, measures: Dataset, path: Path) -> tuple[np.ndarray, float]:
    """Slice index of each frame on a regular grid along ``normal``, and the step (mm)."""
    along = positions @ normal
    planes = np.unique(np.round(along, 3))
    declared = float(getattr(measures, "SpacingBetweenSlices", 0) or getattr(measures, "SliceThickness", 0) or 0)
    step = float(np.min(np.diff(planes))) if planes.size > 1 else (declared or 1.0)
    if declared and planes.size > 1:  # frames of empty planes may be left out: trust the declared step
        n = (planes - planes[0]) / declared
        if np.max(np.abs(n - np.rint(n))) * declared <= GRID_TOL_MM:
            step = declared
    k = (along - along.min()) / step
    if np.max(np.abs(k - np.rint(k))) * step > GRID_TOL_MM:
        raise ScanError(path, f"SEG frames do not lie on a regular grid of {step:.3f} mm along the slice normal")
    in_plane = positions - np.outer(along - along.min(), normal)
    if np.max(np.abs(in_plane - in_plane[int(np.argmin(along))])) > GRID_TOL_MM:
        raise ScanError(path, "SEG frames are shifted in-plane against each other; not one voxel grid")
    return np.rint(k).astype(int), step


def _item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = getattr(ds, keyword, None)
    return seq[0] if seq else None


def _functional_item(shared: Dataset | None, frame: Dataset, keyword: str) -> Dataset | None:
    """A functional group item from the frame, else from the shared groups."""
    return _item(frame, keyword) or (_item(shared, keyword) if shared is not None else None)


def _functional(shared: Dataset | None, frame: Dataset, seq: str, keyword: str, path: Path):
    item = _functional_item(shared, frame, seq)
    value = getattr(item, keyword, None) if item is not None else None
    if not value:
        raise ScanError(path, f"SEG lacks {seq}/{keyword}")
    return value


def _frame_position(frame: Dataset, path: Path) -> np.ndarray:
    return np.array(_functional(None, frame, "PlanePositionSequence", "ImagePositionPatient", path), dtype=float)


def _frame_segment(shared: Dataset | None, frame: Dataset, path: Path) -> int:
    """The frame's segment number: per frame, or shared when the SEG has one segment (as highdicom writes it)."""
    return int(_functional(shared, frame, "SegmentIdentificationSequence", "ReferencedSegmentNumber", path))
