"""How a manifest path names one DICOM series of a folder that holds several: ``folder#key``."""

from __future__ import annotations

import os
from pathlib import Path

SERIES_SEP = "#"


def series_path(folder: str | os.PathLike, key: str | None) -> str:
    """The path string naming one series of a folder: ``folder`` or ``folder#key``."""
    return str(folder) if key is None else f"{folder}{SERIES_SEP}{key}"


def split_series_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """Inverse of :func:`series_path`: ``"dir/folder#key"`` -> ``(Path("dir/folder"), "key")``.

    A path that exists as written is never split (a file may have '#' in its name).
    """
    p = Path(path)
    if SERIES_SEP in p.name and not p.exists():
        folder, key = str(p).rsplit(SERIES_SEP, 1)
        return Path(folder), key
    return p, None
