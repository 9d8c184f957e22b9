"""Path text: scan file suffixes and stems, and how a manifest path names one DICOM series of a
folder that holds several (``folder#key``)."""

from __future__ import annotations

import os
from pathlib import Path

SERIES_SEP = "#"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


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


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as valid UTF-8 text: bytes of a file name that is not UTF-8 (read back by
    Python as lone surrogates) are shown as ``\\xNN`` escapes, so it can be written anywhere."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def utf8_problem(name: str) -> str:
    """'' when the file name ``name`` is valid UTF-8, else why the file cannot be used."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return ("file name is not valid UTF-8 (its bytes shown as \\x escapes); no manifest can hold it: "
                "rename it (e.g. convmv -f latin1 -t utf8) to scan it")
    return ""


def stem(path: str | os.PathLike) -> str:
    """File name without its scan extension ('a.nii.gz' -> 'a'); folder names unchanged."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
