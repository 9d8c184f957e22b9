"""`read_volume`: any supported scan (file or DICOM folder) into a validated :class:`Volume`.

NIfTI is read with nibabel (its affine is already voxel -> RAS mm). NRRD / MHA / MHD are read
with SimpleITK, whose LPS geometry is converted to RAS. A folder is read as one DICOM series
(see :mod:`medmae.io.dicom`). Every reader ends in :func:`validate`, so a Volume that comes
back is 3D, non-empty, finite, with an invertible affine.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medmae.io.errors import ScanError
from medmae.io.header_checks import (check_detached_data, check_nifti_header, check_scaling, nifti_needs,
                                     raw_nifti_header, read_gzip_capped)
from medmae.io.limits import check_image_size
from medmae.io.totalseg import is_totalseg_folder, read_totalseg
from medmae.io.paths import SERIES_SEP, split_series_path
from medmae.io.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
GZIP_MAGIC = b"\x1f\x8b"
MIN_VOXEL_MM, MAX_VOXEL_MM = 1e-3, 100.0
"""Voxel sizes outside this range are header faults (1e20 mm would pass as 'no body found')."""

log = logging.getLogger(__name__)


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
        from medmae.io.dicom import read_series

        return read_series(path, series=series)
    if kind == "dicom_file":
        from medmae.io.dicom_seg import read_dicom_seg

        return read_dicom_seg(path)
    if kind is None:
        raise ScanError(path, f"unsupported file type (expected one of {NIFTI_SUFFIXES + ITK_SUFFIXES} or a DICOM folder)")
    if path.stat().st_size == 0:
        raise ScanError(path, "empty file (0 bytes)")
    reader = _read_nifti if kind == "nifti" else _read_itk
    channel = channel_index(path, key)
    try:
        array, affine, meta = reader(path)
    except PermissionError:
        raise ScanError(path, "permission denied: this user cannot read the file (fix its permissions)") from None
    if channel is not None:
        array = take_channel(path, array, channel)
        meta["channel"] = channel
    return validate(Volume(array=array, affine=affine, path=path, meta=meta))


def channel_path(path: str | os.PathLike, channel: int) -> str:
    """The manifest path of one channel of a 4D file whose 4th axis is channels: ``x.nii.gz#c1``."""
    return f"{path}{SERIES_SEP}c{channel}"


def channel_index(path: Path, key: str | None) -> int | None:
    """The channel a ``file#cN`` path names (None without a key); ScanError for another key."""
    if key is None:
        return None
    m = re.fullmatch(r"c(\d+)", key)
    if not m:
        raise ScanError(path, f"'#{key}' after a file name: expected '#c<N>', channel N of a 4D image")
    return int(m.group(1))


def take_channel(path: Path, array: np.ndarray, channel: int) -> np.ndarray:
    """Channel ``channel`` (4th axis) of a 4D array; ScanError naming the file when there is none."""
    if array.ndim != 4:
        raise ScanError(path, f"channel {channel} asked for, but the image is {array.ndim}D "
                              f"{tuple(array.shape)}, not 4D with channels on its 4th axis")
    if not 0 <= channel < array.shape[3]:
        raise ScanError(path, f"channel {channel} asked for, but the 4D image has {array.shape[3]} "
                              f"(0..{array.shape[3] - 1})")
    return np.ascontiguousarray(array[..., channel])


def channels_in_header(path: str | os.PathLike) -> int:
    """Number of volumes on the 4th axis of a NIfTI file, from its header alone (1 for 3D)."""
    try:
        shape = raw_nifti_header(Path(path)).get_data_shape()
    except Exception:  # read_volume reports an unreadable file with its real cause
        return 1
    return int(shape[3]) if len(shape) >= 4 and all(s == 1 for s in shape[4:]) else 1


def check_reachable(path: Path) -> None:
    """Raise ScanError naming the real cause when ``path`` cannot be opened: missing, a
    symlink loop, a dangling symlink, or no permission to read it."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ScanError(path, "symlink loop: the link points (through other links) back to itself") from None
        if isinstance(e, PermissionError):
            raise ScanError(path, "permission denied: this user cannot reach the file (fix its permissions)") from None
        if os.path.islink(path):
            raise ScanError(path, f"dangling symlink: its target {os.readlink(path)} does not exist") from None
        raise ScanError(path, "no such file or folder") from None


def validate(vol: Volume) -> Volume:
    """Check a Volume is usable; squeeze trailing singleton axes. Raises ScanError."""
    arr = np.asarray(vol.array)
    if arr.size == 0:
        raise ScanError(vol.path, f"zero-size image of shape {tuple(arr.shape)}")
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        kind = "2D" if arr.ndim == 2 else f"{arr.ndim}D"
        raise ScanError(vol.path, f"{kind} image of shape {tuple(arr.shape)} where a 3D volume is expected")
    if sum(s > 1 for s in arr.shape) < 3:
        raise ScanError(vol.path, f"2D image of shape {tuple(arr.shape)} where a 3D volume is expected")
    if arr.dtype.kind not in "biuf":
        raise ScanError(vol.path, f"unsupported voxel type {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ScanError(vol.path, f"{bad} non-finite voxel(s) (NaN or Inf)")
    affine = np.asarray(vol.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ScanError(vol.path, "invalid geometry: voxel-to-world affine is missing, non-finite or singular")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    odd = [i for i, s in enumerate(spacing) if not MIN_VOXEL_MM <= s <= MAX_VOXEL_MM]
    if odd:
        i = odd[0]
        raise ScanError(vol.path, f"voxel size {spacing[i]:.3g} mm along axis {i}: no scanner makes voxels outside "
                                  f"[{MIN_VOXEL_MM:g}, {MAX_VOXEL_MM:g}] mm (wrong units or a corrupt header)")
    return Volume(array=arr, affine=affine, path=vol.path, meta=dict(vol.meta))


def rescale(raw: np.ndarray, slope: float | None, intercept: float | None) -> np.ndarray:
    """Apply ``raw * slope + intercept`` keeping integers integer.

    Identity scaling returns ``raw`` untouched; integer slope and intercept give the smallest
    signed integer type that holds the result (int16 for CT HU); anything else gives float32.
    """
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    intercept = 0.0 if intercept is None or not np.isfinite(intercept) else float(intercept)
    if slope == 1.0 and intercept == 0.0:
        return raw
    if raw.dtype.kind in "biu" and slope.is_integer() and intercept.is_integer():
        out = raw.astype(np.int64) * int(slope) + int(intercept)
        lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
        for dt in (np.int16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return out.astype(dt)
        return out
    return (raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """nibabel: array in stored dtype after scl_slope/scl_inter, and the best (s/q-form) affine.

    A .nii.gz is decompressed whole first, so gzip's CRC and length checks see every byte
    (nibabel alone stops reading at the end of the voxel data and misses a corrupt stream).
    """
    gz = path.name.lower().endswith(".gz")
    try:
        if gz:
            _check_gzip_magic(path)
        header = raw_nifti_header(path)
    except (ScanError, PermissionError):
        raise
    except Exception as e:  # nibabel raises a zoo of types for non-NIfTI bytes
        why = f"corrupt or truncated gzip stream ({_reason(e)})" if gz and isinstance(e, (OSError, EOFError, zlib.error)) \
            else f"not a readable NIfTI file ({_reason(e)})"
        raise ScanError(path, why) from None
    check_nifti_header(path, header)  # size limit, geometry: before any voxel is read
    try:
        img = _load_nifti_gz(path, nifti_needs(header)) if gz else nib.load(str(path))
    except (ScanError, PermissionError):
        raise
    except Exception as e:
        raise ScanError(path, f"not a readable NIfTI file ({_reason(e)})") from None
    try:
        raw = np.asanyarray(img.dataobj.get_unscaled())
    except Exception as e:
        raise ScanError(path, f"corrupt or truncated NIfTI data ({_reason(e)})") from None
    slope, inter = img.dataobj.slope, img.dataobj.inter
    check_scaling(path, raw, slope, inter)
    meta = {}
    if int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 0:
        log.warning("%s: NIfTI has neither qform nor sform: orientation unknown, read as RAS with the "
                    "voxel sizes only; check left/right before trusting it", path)
        meta["orientation_unknown"] = True
    return rescale(np.asarray(raw), slope, inter), np.asarray(img.affine, dtype=np.float64), meta


def _check_gzip_magic(path: Path) -> None:
    """Only a file that lacks gzip's magic bytes is "not gzip-compressed"; any later failure
    (CRC, length, cut stream) is corruption of a real gzip file."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic != GZIP_MAGIC:
        raise ScanError(path, "not a readable NIfTI file (named .gz but not gzip-compressed: "
                              "no gzip magic bytes at its start)")


def _load_nifti_gz(path: Path, needs: int) -> nib.Nifti1Image:
    """Decompress whole (capped at what the header needs, see
    :func:`medmae.io.header_checks.read_gzip_capped`) so gzip's CRC and length checks see
    every byte (nibabel alone stops reading at the end of the voxel data)."""
    try:
        data = read_gzip_capped(path, needs)
    except (ScanError, PermissionError):
        raise
    except (OSError, EOFError, zlib.error) as e:
        raise ScanError(path, f"corrupt or truncated gzip stream ({_reason(e)})") from None
    if len(data) >= 4 and int.from_bytes(data[:4], "little") == 540 or int.from_bytes(data[:4], "big") == 540:
        return nib.Nifti2Image.from_bytes(data)
    return nib.Nifti1Image.from_bytes(data)


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """SimpleITK: (Z, Y, X) array transposed to (X, Y, Z); LPS geometry converted to RAS."""
    open(path, "rb").close()  # a PermissionError here is named as such, not as "corrupt"
    check_detached_data(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with captured_stderr() as noise:
        try:
            reader.ReadImageInformation()  # the header only: size checked before reading voxels
            problem = check_image_size(reader.GetSize(), _itk_pixel_bytes(reader),
                                       sitk.GetPixelIDValueAsString(reader.GetPixelID()))
            img = None if problem else reader.Execute()
        except RuntimeError as e:
            err = e
        else:
            err = None
    if err is None and problem:
        raise ScanError(path, problem)
    if err is not None:
        raise ScanError(path, f"not a readable image, corrupt or truncated ({itk_reason(err, noise.text)})") from None
    if noise.text:
        log.debug("%s: ITK said: %s", path, " ".join(noise.text.split()))
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ScanError(path, f"{img.GetNumberOfComponentsPerPixel()}-component (vector/RGB) pixels; a scalar 3D volume is expected")
    img = _squeeze_itk(img)
    array = sitk.GetArrayFromImage(img)
    return array.transpose(tuple(range(array.ndim))[::-1]), itk_affine(img), {}


def _itk_pixel_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes per voxel of the image ``reader`` describes (all components)."""
    one = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
    return one.GetSizeOfPixelComponent() * max(1, reader.GetNumberOfComponents())


def _squeeze_itk(img: sitk.Image) -> sitk.Image:
    """Drop trailing size-1 dimensions beyond the third (a 4D image with one time point)."""
    size = list(img.GetSize())
    while len(size) > 3 and size[-1] == 1:
        size[-1] = 0
        img = sitk.Extract(img, size, [0] * len(size))
        size = list(img.GetSize())
    return img


def itk_affine(img: sitk.Image) -> np.ndarray:
    """The (4, 4) voxel -> RAS mm affine of a 3D SimpleITK image (LPS -> RAS)."""
    dim = img.GetDimension()
    if dim != 3:
        return np.full((4, 4), np.nan)  # validate() then reports the dimension problem first
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(img.GetSpacing(), dtype=np.float64)[None, :]
    lps[:3, 3] = img.GetOrigin()
    return LPS_TO_RAS @ lps


class _Captured:
    text = ""


@contextlib.contextmanager
def captured_stderr():
    """Capture what C++ code (ITK) writes to file descriptor 2 while the block runs.

    Yields an object whose ``text`` holds the captured output once the block ends.
    """
    out = _Captured()
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to capture
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            out.text = tmp.read().decode(errors="replace").strip()


def itk_reason(e: BaseException, noise: str = "") -> str:
    """ITK's whole reason: the text after the last 'ERROR:' of the exception (its source
    location and the 'Exception thrown in' preamble dropped), plus what ITK printed."""
    text = " ".join(str(e).split())
    parts = re.split(r"(?:sitk::ERROR|itk::ERROR|ITK ERROR|Description):", text)
    reason = re.sub(r"\(0x[0-9a-f]+\)", "", parts[-1]).strip() or text
    noise = " ".join(noise.split())
    if noise and noise not in reason:
        reason += f"; ITK also printed: {noise[:500]}"
    return reason


def _reason(e: BaseException) -> str:
    """A one-line, short reason from a library exception."""
    if isinstance(e, (EOFError, zlib.error)):
        return f"file ends early or is corrupt: {e}".strip(": ")
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
