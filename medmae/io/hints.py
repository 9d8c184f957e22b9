"""Modality and MR sequence hints from names (file names, folder names, series descriptions).

Only a fixed keyword ever comes out of these functions (``"CT"``, ``"t1c"``...), never the
free text that went in, so a hint is safe to store in a manifest or a Volume's meta.
"""

from __future__ import annotations

import re

import numpy as np

# Checked in order: the first keyword whose pattern matches wins ("t1c" before "t1").
SEQUENCE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("flair", r"flair"),
    ("t1c", r"(?<![a-z0-9])t1[-_ ]?(c|ce|gd|post|contrast)(?![a-z])|(?<![a-z0-9])t1.*(\+c|gad|gd(?![a-z]))"),
    ("t1", r"(?<![a-z0-9])t1|mprage|spgr|tfl3d"),
    ("t2", r"(?<![a-z0-9])t2|(?<![a-z])tse(?![a-z])|haste"),
    ("pd", r"(?<![a-z0-9])pdw?(?![a-z])|proton[-_ ]?density"),
    ("dwi", r"(?<![a-z])(dwi|adc)(?![a-z])|diffusion|ep2d_diff"),
    ("swi", r"(?<![a-z])swi(?![a-z])|susceptibility"),
)
_SEP = r"(^|[^a-z0-9]){}([^a-z]|$)"
CT_WORDS = _SEP.format("ct")
MR_WORDS = _SEP.format("(mr|mri)")


def sequence_hint(*texts: str | None) -> str:
    """The MR sequence keyword (flair, t1c, t1, t2, pd, dwi, swi) found in ``texts``, or ''."""
    for text in texts:
        low = (text or "").lower()
        if not low:
            continue
        for keyword, pattern in SEQUENCE_PATTERNS:
            if re.search(pattern, low):
                return keyword
    return ""


def modality_hint(name: str) -> str:
    """'CT' or 'MR' from a file or folder name ('ct_abdomen', 'sub-01_T1w', 'brain_mri'), or ''."""
    low = name.lower()
    if re.search(CT_WORDS, low):
        return "CT"
    if re.search(MR_WORDS, low) or sequence_hint(low):
        return "MR"
    return ""


def looks_like_ct(array: np.ndarray) -> bool:
    """Intensity test for CT: whole-number values in the HU range and much air (< -500 HU).

    MR magnitudes are non-negative; CT puts air at about -1000 HU, so a scan where at least
    5 % of voxels are below -500 and nothing is below -3100 (-3024 is CT padding) is CT.
    """
    a = np.asarray(array)
    if a.dtype.kind == "f" and not np.all(np.mod(a[:: max(a.size // 100_000, 1)], 1) == 0):
        return False
    return bool(a.min() >= -3100 and a.max() <= 32767 and np.mean(a < -500) >= 0.05)


def infer_modality(array: np.ndarray, declared: str = "", names: tuple[str, ...] = ()) -> tuple[str, str]:
    """('CT' or 'MR', how it was decided): the declared value (DICOM tag / dataset.json)
    first, then a name hint, then :func:`looks_like_ct`. Raises ValueError for other modalities."""
    declared = declared.upper()
    if declared in ("CT", "MR"):
        return declared, "header"
    if declared:
        raise ValueError(f"unsupported modality {declared!r} (CT and MR are supported)")
    for name in names:
        hint = modality_hint(name)
        if hint:
            return hint, "name"
    return ("CT" if looks_like_ct(array) else "MR"), "intensity"
