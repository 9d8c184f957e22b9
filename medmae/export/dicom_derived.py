"""DICOM objects derived from a source DICOM series (highdicom): Parametric Map and SEG.

The objects reference the source series (its SOP instances) and share its frame of
reference, so PACS and viewers (3D Slicer, OHIF) attach them to the right study and lay them
on the source slices. Frame k is the source slice k in order along the slice normal (as
:func:`medmae.io.dicom.read_series` reads the series): an (X, Y, Z) array on the source grid
(X = column, Y = row) gives frame k = ``array[:, :, k].T``.

Identity: highdicom copies patient and study attributes from the source images it is given.
It is given reduced copies of the source headers holding only:

- what PS3.3 requires for a derived object to attach to the right patient, study and
  space: Patient ID and Patient's Name (Patient module, type 2: PACS reconcile on them),
  Study Instance UID (General Study, type 1), Frame of Reference UID, and the SOP Class /
  SOP Instance / Series Instance UIDs of the referenced source images;
- the image geometry (orientation, positions, spacing, rows, columns), needed to place frames;
- every other type-2 attribute of those modules (birth date, sex, study date and time,
  referring physician, study ID, accession number) present but EMPTY, as PS3.3 allows.

Nothing else of the source header reaches the outputs; file names never carry header values.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medmae import __version__
from medmae.atomic import atomic_write
from medmae.io.dicom import select_series, slice_order
from medmae.io.paths import split_series_path

KEEP = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
        "PatientID", "PatientName", "Modality")
"""Identifying attributes copied (see the module docstring)."""
GEOMETRY = ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness",
            "SpacingBetweenSlices", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
            "HighBit", "PixelRepresentation")
EMPTY = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
         "AccessionNumber")
"""Type-2 attributes of the Patient and General Study modules: written empty."""
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
MANUFACTURER = "medmae"


class DicomExportError(ValueError):
    """The source series cannot be referenced by a derived object (the message holds no header value)."""


def export_failure(e: Exception) -> str:
    """Why a DICOM export failed, in a line safe to log: our own messages hold no header value;
    another library's might (a name it found malformed), so only its type is given."""
    return str(e) if isinstance(e, DicomExportError) else f"{type(e).__name__} while building the DICOM object"


def _reduced(h: Dataset) -> Dataset:
    out = Dataset()
    for key in KEEP + GEOMETRY:
        if key in h and h.data_element(key).value not in (None, ""):
            out.add(copy.deepcopy(h.data_element(key)))
    for key in EMPTY:
        setattr(out, key, "")
    return out


def source_headers(series: str | os.PathLike) -> list[Dataset]:
    """Reduced headers of a series' slices, in slice order (the order of the grid's k axis)."""
    folder, key = split_series_path(series)
    s = select_series(folder, key)
    order, _ = slice_order(s)
    headers = [s.headers[i] for i in order]
    for name in REQUIRED:
        if any(not str(getattr(h, name, "") or "") for h in headers):
            raise DicomExportError(f"the source series lacks {name} in some slice: a derived DICOM object "
                                   "cannot reference it")
    return [_reduced(h) for h in headers]


def frames(array: np.ndarray) -> np.ndarray:
    """(X, Y, Z) on the source grid -> (Z, rows, columns) frames in slice order."""
    return np.ascontiguousarray(np.transpose(np.asarray(array), (2, 1, 0)))


def _device() -> dict:
    return {"manufacturer": MANUFACTURER, "manufacturer_model_name": "medmae", "software_versions": __version__,
            "device_serial_number": "none"}


def _write(obj: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: obj.save_as(tmp, enforce_file_format=True))


def parametric_map(headers: list[Dataset], array: np.ndarray, path: Path, label: str, explanation: str,
                   series_number: int = 9901) -> Path:
    """A float Parametric Map (unit UCUM '1', dimensionless) of an (X, Y, Z) source-grid map."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    data = frames(array).astype(np.float32)
    lo, hi = float(data.min()), float(data.max())
    rwvm = hd.pm.RealWorldValueMapping(lut_label=label[:16], lut_explanation=explanation[:64], unit=codes.UCUM.NoUnits,
                                       value_range=(lo, hi if hi > lo else lo + 1.0), slope=1.0, intercept=0.0)
    hi99 = float(np.percentile(data, 99.9)) if data.size else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = hd.pm.ParametricMap(headers, data, hd.UID(), series_number, hd.UID(), 1, **_device(),
                                 contains_recognizable_visual_features=False, real_world_value_mappings=[rwvm],
                                 window_center=hi99 / 2, window_width=max(hi99, 1e-6),
                                 content_description=explanation[:64], content_label=label.upper()[:16])
    return _write(pm, path)


def segmentation(headers: list[Dataset], labels: np.ndarray, names: list[str], path: Path, description: str,
                 category: str = "anatomy", series_number: int = 9902) -> Path:
    """A binary DICOM SEG of an (X, Y, Z) source-grid label map with values 0..len(names): segment n is names[n-1]."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    data = frames(labels).astype(np.uint16 if len(names) > 255 else np.uint8)
    if data.max() > len(names):
        raise DicomExportError(f"label value {int(data.max())} has no segment name ({len(names)} given)")
    cat, kind = ((codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion) if category == "lesion"
                 else (codes.SCT.AnatomicalStructure, codes.SCT.AnatomicalStructure))
    algo = hd.AlgorithmIdentificationSequence(name="medmae", version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(n, name[:64], cat, kind, hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algo)
                for n, name in enumerate(names, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(headers, data, hd.seg.SegmentationTypeValues.BINARY, segments, hd.UID(),
                                  series_number, hd.UID(), 1, **_device(), content_description=description[:64],
                                  omit_empty_frames=bool(data.any()))
    return _write(seg, path)
