"""Reading limits set once per command: the largest image read, and detached data files.

Both travel in environment variables, so worker processes (spawned) and every reader
(`data scan`, `preprocess`, `anomaly score`, `segment`) see the same values:

- ``MEDMAE_MAX_IMAGE_MB`` (``--max-image-mb``): the largest voxel data (header voxel count
  x bytes per voxel) read, checked from the header before any voxel is read or
  decompressed. Default: 2048 MB, or an eighth of the machine's memory when that is less
  (the reading pipeline holds a few copies of an image at once).
- ``MEDMAE_ALLOW_OUTSIDE_DATA=1`` (``--allow-outside-data``): read an .mhd / .nhdr whose data
  file lies outside the header's folder (refused by default: ``../../secret.raw``,
  ``/etc/passwd``).
"""

from __future__ import annotations

import os

import psutil

MAX_IMAGE_ENV = "MEDMAE_MAX_IMAGE_MB"
OUTSIDE_DATA_ENV = "MEDMAE_ALLOW_OUTSIDE_DATA"
DEFAULT_MAX_MB = 2048
MB = 1 << 20


def default_max_image_mb() -> int:
    """min(2048, total memory / 8) in MB."""
    return int(min(DEFAULT_MAX_MB, psutil.virtual_memory().total // 8 // MB))


def max_image_bytes() -> int:
    """The limit in bytes (``MEDMAE_MAX_IMAGE_MB``, else :func:`default_max_image_mb`)."""
    text = os.environ.get(MAX_IMAGE_ENV, "").strip()
    try:
        mb = float(text) if text else default_max_image_mb()
    except ValueError:
        raise ValueError(f"{MAX_IMAGE_ENV}={text!r} is not a number of megabytes") from None
    return int(mb * MB)


def set_max_image_mb(mb: float | None) -> None:
    """Set the limit for this process and the workers it starts (None: leave as it is)."""
    if mb is None:
        return
    if not mb > 0:
        raise ValueError(f"--max-image-mb must be > 0, got {mb:g}")
    os.environ[MAX_IMAGE_ENV] = f"{mb:g}"


def outside_data_allowed() -> bool:
    return os.environ.get(OUTSIDE_DATA_ENV, "") == "1"


def allow_outside_data(allow: bool) -> None:
    """Allow (or not) detached data files outside their header's folder, here and in workers."""
    if allow:
        os.environ[OUTSIDE_DATA_ENV] = "1"


def describe(nbytes: int) -> str:
    """'1.5 GiB', '300.0 MiB'..."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


def check_image_size(shape: tuple[int, ...], itemsize: int, dtype: str = "") -> str:
    """'' when ``shape`` x ``itemsize`` bytes is within the limit, else why it is refused."""
    voxels = 1
    for s in shape:
        voxels *= max(int(s), 0)
    nbytes = voxels * int(itemsize)
    limit = max_image_bytes()
    if nbytes <= limit:
        return ""
    dims = "x".join(str(int(s)) for s in shape)
    return (f"header declares {dims} voxels{(' of ' + dtype) if dtype else ''} = {describe(nbytes)}, above the "
            f"limit of {describe(limit)}; refused before reading (a decompression bomb or a wrong header). "
            f"Raise the limit with --max-image-mb (or {MAX_IMAGE_ENV}) if the image is real")
