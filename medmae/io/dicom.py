"""DICOM series: find them in a folder, check they are complete, read one into a Volume.

A folder may hold several series. Slices are grouped by SeriesInstanceUID; where that is
blank they are grouped by what a series shares: modality, series/acquisition number,
orientation, rows x columns and pixel spacing. Within a series, slices are ordered by their
position along the slice normal, and the series must be complete: no duplicated positions,
no gaps, even spacing, one orientation, one image size. Compressed transfer syntaxes
(JPEG-2000, JPEG-LS, RLE...) decode through pydicom's pylibjpeg plugins.

Nothing that identifies a patient leaves this module: series are told apart by a short hash
of their grouping key, and a Volume's meta holds only modality, sequence hints and counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medmae.io.errors import ScanError
from medmae.io.geometry import LPS_TO_RAS, TILT_WARN_DEG, gantry_tilt
from medmae.io.hints import sequence_hint
from medmae.io.paths import series_path
from medmae.io.scaling import rescale
from medmae.io.volume import Volume, validate

log = logging.getLogger(__name__)

# Objects in a series folder that are not image slices (segmentations, structure sets...).
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "DOC", "REG"}
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
PARAMETRIC_MAP_CLASS = "1.2.840.10008.5.1.4.1.1.30"  # a derived result (e.g. medmae's anomaly map), not a scan
SPACING_RTOL = 0.05  # steps may differ from the median step by 5 % (plus 0.01 mm)


@dataclass
class DicomSeries:
    """One series found in a folder: its slice files and headers (pixels not yet read).

    ``key`` is an 8-hex-digit hash of the grouping key (stable, not identifying);
    ``index`` its position among the folder's series (ordered by series number, then key).
    """

    folder: Path
    key: str
    index: int
    files: list[Path]
    headers: list[Dataset]
    shared: bool = False  # the folder holds other series too

    @property
    def where(self) -> str:
        """The series as errors name it: its folder, or ``folder#key`` when the folder holds several."""
        return series_path(self.folder, self.key if self.shared else None)

    @property
    def modality(self) -> str:
        return str(getattr(self.headers[0], "Modality", "") or "")

    def describe(self) -> str:
        h = self.headers[0]
        return (f"[{self.index}] key {self.key}: {self.modality or '?'} "
                f"{len(self.files)} slice(s) of {getattr(h, 'Rows', '?')}x{getattr(h, 'Columns', '?')}")


def is_dicom_image(header: Dataset) -> bool:
    """True for an image slice; False for DICOMDIR, SEG, RTSTRUCT, SR, Parametric Maps and other non-images."""
    sop_class = str(getattr(getattr(header, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if sop_class in (DICOMDIR_CLASS, PARAMETRIC_MAP_CLASS):
        return False
    if str(getattr(header, "Modality", "")).upper() in NON_IMAGE_MODALITIES:
        return False
    return "Rows" in header and "Columns" in header


@contextlib.contextmanager
def quiet_pydicom():
    """Silence pydicom's warnings and log lines while reading: they quote header values
    (dates, names in malformed elements) and file names, which must not reach any log."""
    logger = logging.getLogger("pydicom")
    was = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = was


def read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file (no pixels), or None when ``path`` is not DICOM.

    A file that cannot be read at all (permissions, I/O error) raises OSError: it may be a
    slice of a series, which must not come back one slice short.
    """
    with open(path, "rb") as f:  # OSError (PermissionError, EIO) propagates
        f.read(1)
    try:
        with quiet_pydicom():
            return pydicom.dcmread(str(path), stop_before_pixels=True)
    except OSError:
        raise
    except Exception:  # a probe: anything pydicom cannot parse is simply not DICOM
        return None


@dataclass
class DicomSeg:
    """A DICOM SEG file found beside image series, with what it refers to (never logged)."""

    path: Path
    series_uids: set[str]
    frame_uid: str


def find_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """Every image series whose files lie directly in ``folder`` (not in sub-folders).

    Raises ScanError when a file of the folder cannot be read (the slices of its series
    would silently be missing).
    """
    return scan_dicom_folder(folder)[0]


def scan_dicom_folder(folder: str | os.PathLike) -> tuple[list[DicomSeries], list[DicomSeg]]:
    """Image series and DICOM SEG objects whose files lie directly in ``folder``."""
    folder = Path(folder)
    groups: dict[tuple, list[tuple[Path, Dataset]]] = {}
    segs, unreadable = [], []
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as e:
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise ScanError(folder, f"cannot list this folder ({why})") from None
    for n, f in enumerate(files, start=1):
        try:
            h = read_header(f)
        except OSError as e:
            unreadable.append((n, e))
            continue
        if h is not None and is_dicom_image(h):
            groups.setdefault(_group_key(h), []).append((f, h))
        elif h is not None and str(getattr(h, "Modality", "")).upper() == "SEG":
            segs.append(DicomSeg(f, _referenced_series(h), str(getattr(h, "FrameOfReferenceUID", "") or "")))
    if unreadable:
        n, e = unreadable[0]
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise ScanError(folder, f"{len(unreadable)} of the folder's {len(files)} files cannot be read (file {n} in "
                                f"name order: {why}); its series would come back incomplete, so none is used")
    series = []
    for key, members in groups.items():
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
        series.append(DicomSeries(folder, digest, -1, [m[0] for m in members], [m[1] for m in members]))
    series.sort(key=lambda s: (_int(getattr(s.headers[0], "SeriesNumber", None), 1 << 30), s.key))
    for i, s in enumerate(series):
        s.index = i
        s.shared = len(series) > 1
    return series, segs


def _referenced_series(h: Dataset) -> set[str]:
    return {str(getattr(item, "SeriesInstanceUID", "") or "") for item in getattr(h, "ReferencedSeriesSequence", []) or []
            } - {""}


def series_uid(s: DicomSeries) -> tuple[str, str]:
    """(SeriesInstanceUID, FrameOfReferenceUID) of a series, for pairing a SEG (never logged)."""
    h = s.headers[0]
    return str(getattr(h, "SeriesInstanceUID", "") or ""), str(getattr(h, "FrameOfReferenceUID", "") or "")


def select_series(folder: str | os.PathLike, series: int | str | None = None) -> DicomSeries:
    """The one series of ``folder``, or the one picked by index or key when there are several."""
    folder = Path(folder)
    found = find_series(folder)
    if not found:
        raise ScanError(folder, "no DICOM image files in this folder")
    listing = "; ".join(s.describe() for s in found)
    if series is None:
        if len(found) > 1:
            raise ScanError(folder, f"folder holds {len(found)} DICOM series, pass series= one of: {listing}")
        return found[0]
    for s in found:
        if series == s.index or str(series) == s.key or str(series) == str(s.index):
            return s
    raise ScanError(folder, f"no series {series!r} in this folder; it holds: {listing}")


def read_series(folder: str | os.PathLike, series: int | str | None = None) -> Volume:
    """Read one DICOM series (a folder) into a Volume: array (X, Y, Z), RAS affine.

    CT keeps integer HU (int16) after RescaleSlope/Intercept; a non-integer slope gives
    float32. Raises ScanError for an incomplete, inconsistent or undecodable series.
    """
    s = select_series(folder, series)
    order, step = slice_order(s)
    slices = [_pixels(s.files[i], s.where, f"slice {n + 1} of {len(order)}") for n, i in enumerate(order)]
    headers = [s.headers[i] for i in order]
    array = _stack_rescaled(slices, headers)
    affine = series_affine(headers, step)
    meta = series_meta(s)
    tilt = gantry_tilt(headers[0].ImageOrientationPatient, step)
    if tilt > TILT_WARN_DEG:
        log.warning("%s: gantry tilt of %.1f degrees (slice positions step %.1f degrees off the slice normal): the "
                    "affine is sheared; preprocessing resamples it onto an upright grid, but check the geometry",
                    s.where, tilt, tilt)
        meta["gantry_tilt_deg"] = round(tilt, 2)
    return validate(Volume(array=array, affine=affine, path=s.folder, meta=meta))


def slice_order(s: DicomSeries) -> tuple[list[int], np.ndarray]:
    """Indices of ``s.files`` sorted along the slice normal, and the (3,) LPS step vector.

    Raises ScanError on inconsistent geometry, duplicated positions, gaps or uneven spacing.
    """
    _check_consistent(s)
    iop = np.array(s.headers[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    ipp = np.array([_position(h, s.where) for h in s.headers])  # (N, 3) LPS mm
    along = ipp @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    along = along[order]
    if len(order) == 1:
        thickness = float(getattr(s.headers[0], "SliceThickness", 0) or 0) or 1.0
        return order, normal * thickness
    _check_spacing(s.where, along)
    step = (ipp[order[-1]] - ipp[order[0]]) / (len(order) - 1)
    return order, step


def series_affine(headers: list[Dataset], step: np.ndarray) -> np.ndarray:
    """(4, 4) voxel (column i, row j, slice k) -> RAS mm affine of slices in order."""
    h = headers[0]
    return plane_affine(h.ImageOrientationPatient, h.PixelSpacing, step, h.ImagePositionPatient)


def plane_affine(iop, pixel_spacing, step: np.ndarray, origin) -> np.ndarray:
    """(4, 4) voxel -> RAS mm affine from DICOM plane geometry (all LPS): ImageOrientationPatient,
    PixelSpacing (between rows, between columns), the (3,) slice step and the first plane's position."""
    iop = np.asarray(iop, dtype=np.float64)
    row_spacing, col_spacing = (float(v) for v in pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing  # i runs along a row (across columns)
    lps[:3, 1] = iop[3:] * row_spacing  # j runs down a column (across rows)
    lps[:3, 2] = step
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_TO_RAS @ lps


def series_meta(s: DicomSeries) -> dict:
    """Non-identifying facts: modality, sequence keyword, coded scanning sequence, counts."""
    h = s.headers[0]
    meta = {"modality": s.modality, "slices": len(s.files), "series_key": s.key, "series_index": s.index}
    seq = sequence_hint(str(getattr(h, "SequenceName", "") or ""), str(getattr(h, "SeriesDescription", "") or ""),
                        str(getattr(h, "ProtocolName", "") or ""))
    if seq:
        meta["sequence"] = seq
    scanning = getattr(h, "ScanningSequence", None)
    if scanning:
        codes = scanning if isinstance(scanning, (list, pydicom.multival.MultiValue)) else [scanning]
        meta["scanning_sequence"] = "\\".join(str(c) for c in codes if str(c).isalpha() and len(str(c)) <= 4)
    return meta


def _group_key(h: Dataset) -> tuple:
    """What slices of one series share: the UID when present, else geometry and numbers."""
    uid = str(getattr(h, "SeriesInstanceUID", "") or "").strip()
    if uid:
        return ("uid", uid)
    iop = tuple(round(float(v), 4) for v in (getattr(h, "ImageOrientationPatient", None) or []))
    spacing = tuple(round(float(v), 4) for v in (getattr(h, "PixelSpacing", None) or []))
    return ("geometry", str(getattr(h, "Modality", "")), _int(getattr(h, "SeriesNumber", None), -1),
            _int(getattr(h, "AcquisitionNumber", None), -1), iop, _int(getattr(h, "Rows", None), -1),
            _int(getattr(h, "Columns", None), -1), spacing, str(getattr(h, "FrameOfReferenceUID", "") or ""))


def _check_consistent(s: DicomSeries) -> None:
    """Every slice: geometry tags present, one orientation, one image size, one pixel spacing."""
    first = s.headers[0]
    for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        missing = sum(1 for h in s.headers if not getattr(h, tag, None))
        if missing:
            raise ScanError(s.where, f"{missing} slice(s) lack {tag}; cannot place the series in space")
    if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
        raise ScanError(s.where, "multi-frame DICOM images are not supported; export the series as one slice per file")
    if int(getattr(first, "SamplesPerPixel", 1) or 1) != 1:
        raise ScanError(s.where, "colour (multi-sample) DICOM images; a greyscale scan is expected")
    sizes = [(int(h.Rows), int(h.Columns)) for h in s.headers]
    if len(set(sizes)) > 1:
        shown = ", ".join(f"{r}x{c}" for r, c in sorted(set(sizes)))
        common = max(set(sizes), key=sizes.count)
        stray = [n + 1 for n, v in enumerate(sizes) if v != common]
        raise ScanError(s.where, f"inconsistent series: slices have different rows x columns ({shown}); stray "
                                 f"slice(s): file(s) {_listed(stray)} of {len(sizes)} in name order")
    iops = [tuple(np.round(np.array(h.ImageOrientationPatient, dtype=np.float64), 4)) for h in s.headers]
    if len(set(iops)) > 1:
        common = max(set(iops), key=iops.count)
        stray = [n + 1 for n, v in enumerate(iops) if v != common]
        raise ScanError(s.where, f"inconsistent series: {len(stray)} stray slice(s) (file(s) {_listed(stray)} of "
                                 f"{len(iops)} in name order) have another ImageOrientationPatient than the rest "
                                 "(a localizer?); move them out of the series")
    ps0 = np.array(first.PixelSpacing, dtype=np.float64)
    if any(not np.allclose(np.array(h.PixelSpacing, dtype=np.float64), ps0, rtol=1e-4) for h in s.headers):
        raise ScanError(s.where, "inconsistent series: slices have different PixelSpacing")


def _listed(numbers: list[int], most: int = 5) -> str:
    return ", ".join(str(n) for n in numbers[:most]) + (" ..." if len(numbers) > most else "")


def _check_spacing(folder: str | Path, along: np.ndarray) -> None:
    """Positions along the normal (sorted, mm): no duplicates, no gaps, even steps."""
    steps = np.diff(along)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        k = int(dup[0])
        raise ScanError(folder, f"duplicated slice position: {dup.size} pair(s) of slices share a position "
                                f"(first at {along[k]:.2f} mm along the slice normal)")
    expected = float(np.median(steps))
    tol = SPACING_RTOL * expected + 0.01
    multiple = np.rint(steps / expected)
    gaps = np.flatnonzero((multiple >= 2) & (np.abs(steps - multiple * expected) <= tol * multiple))
    if gaps.size:
        k = int(gaps[0])
        missing = int(np.sum(multiple[gaps] - 1))
        raise ScanError(folder, f"incomplete series: slice gap of {steps[k]:.1f} mm between positions {along[k]:.2f} "
                                f"and {along[k + 1]:.2f} mm (expected {expected:.1f} mm), {missing} slice(s) missing")
    if np.any(np.abs(steps - expected) > tol):
        raise ScanError(folder, f"uneven slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm "
                                f"(median {expected:.2f} mm)")


def _position(h: Dataset, folder: str | Path) -> np.ndarray:
    try:
        pos = np.array(h.ImagePositionPatient, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScanError(folder, "unreadable ImagePositionPatient in a slice") from None
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise ScanError(folder, "malformed ImagePositionPatient in a slice")
    return pos


def _pixels(path: Path, folder: str | Path, where: str) -> np.ndarray:
    """Decode one slice: (rows, cols) raw stored values.

    ``where`` ('slice 4 of 20') names the slice in errors instead of its file name, which
    is often built from UIDs.
    """
    try:
        with quiet_pydicom():
            arr = pydicom.dcmread(str(path)).pixel_array
    except OSError as e:
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise ScanError(folder, f"cannot read {where} ({why}); the series would be incomplete") from None
    except Exception as e:  # pydicom and its decoder plugins raise many types
        text = " ".join(str(e).replace(str(path), "<file>").split())[:200] or type(e).__name__
        raise ScanError(folder, f"cannot decode the pixels of {where} ({text})") from None
    if arr.ndim != 2:
        raise ScanError(folder, f"{where} decodes to shape {arr.shape}, expected rows x columns")
    return arr


def _stack_rescaled(slices: list[np.ndarray], headers: list[Dataset]) -> np.ndarray:
    """(X, Y, Z) array after RescaleSlope/Intercept; one shared rescale keeps int16 HU."""
    raw = np.stack([a.T for a in slices], axis=-1)  # (cols, rows, slices) = (X, Y, Z)
    params = {(_float(getattr(h, "RescaleSlope", None)), _float(getattr(h, "RescaleIntercept", None))) for h in headers}
    if len(params) == 1:
        slope, inter = params.pop()
        return rescale(raw, slope, inter)
    out = np.empty(raw.shape, dtype=np.float32)
    for k, h in enumerate(headers):
        out[..., k] = rescale(raw[..., k].astype(np.float32), _float(getattr(h, "RescaleSlope", None)),
                              _float(getattr(h, "RescaleIntercept", None)))
    return out


def _float(v) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _int(v, default: int) -> int:
    try:
        return default if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return default

