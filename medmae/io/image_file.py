"""Reading one image file (NIfTI with nibabel, NRRD / MHA / MHD with SimpleITK) into a
validated :class:`~medmae.io.volume.Volume`; ``file#cN`` picks channel N of a 4D file.

NIfTI's affine is already voxel -> RAS mm; SimpleITK's LPS geometry is converted to RAS.
Every failure is a :class:`~medmae.io.errors.ScanError` naming the file and the real cause.
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
from medmae.io.geometry import LPS_TO_RAS
from medmae.io.header_checks import (check_detached_data, check_nifti_header, check_scaling, nifti_needs,
                                     raw_nifti_header, read_gzip_capped)
from medmae.io.limits import check_image_size
from medmae.io.paths import NIFTI_SUFFIXES
from medmae.io.scaling import rescale
from medmae.io.volume import Volume, validate

GZIP_MAGIC = b"\x1f\x8b"

log = logging.getLogger(__name__)


def read_image_file(path: Path, key: str | None = None) -> Volume:
    """One NIfTI / NRRD / MHA / MHD file (channel ``cN`` of a 4D one when ``key`` is ``"cN"``).

    Returns a validated Volume, array (X, Y, Z) in native dtype (after the file's scaling).
    """
    check_reachable(path)
    if path.stat().st_size == 0:
        raise ScanError(path, "empty file (0 bytes)")
    reader = _read_nifti if path.name.lower().endswith(NIFTI_SUFFIXES) else _read_itk
    channel = channel_index(path, key)
    try:
        array, affine, meta = reader(path)
    except PermissionError:
        raise ScanError(path, "permission denied: this user cannot read the file (fix its permissions)") from None
    if channel is not None:
        array = take_channel(path, array, channel)
        meta["channel"] = channel
    return validate(Volume(array=array, affine=affine, path=path, meta=meta))


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
