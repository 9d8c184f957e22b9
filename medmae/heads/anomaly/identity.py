"""Which scan a case is, by content: the sha256 of its image bytes (not of its path or label).

A calibration stores the digest of every scan it was computed from and ``score`` records
each case's digest in case.json, so ``evaluate`` can tell a calibration scan (in-sample)
from a held-out one even under another name, path or case id. The digest covers the image
files only (every file of a DICOM folder, sorted; plus the series key of a ``folder#key``
path), so the same scan with or without a lesion mask is the same scan.
"""

from __future__ import annotations

import hashlib

from medmae.io.manifest import Case, sha256_of
from medmae.io.paths import split_series_path


def image_digest(case: Case) -> str:
    """sha256 (hex) over the bytes of every image file of the case, channel by channel."""
    h = hashlib.sha256()
    for path in case.image:
        folder, key = split_series_path(path)
        h.update(sha256_of([folder]).encode())
        h.update(f"#{key or ''};".encode())
    return h.hexdigest()
