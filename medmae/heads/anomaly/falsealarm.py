"""Where a map's top voxels fall: the rim of the brain mask and CSF (issue 20, item 2).

The share of a map's top 1 % body voxels that lie within 3 mm of the mask's edge or in CSF
says how much of the reader's attention goes to the two places where reconstruction errs on
skull-stripped brains. It is recorded per case (case.json ``false_alarm``) and measured
before and after a fix (docs/anomaly.md).

CSF is estimated per case without labels: the 3-class multi-Otsu class on CSF's side of the
intensity scale of the scan's first channel (brightest on T2 and PD, darkest on FLAIR, T1,
T1c and unknown sequences), minus the lesion label when one is given (a T2-bright lesion is
not CSF).
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_multiotsu

from medmae.heads.anomaly.maps import edge_distance_mm

CSF_BRIGHT = {"t2", "pd"}
"""Sequences on which CSF is the brightest tissue (elsewhere it is the darkest)."""


def csf_mask(channel: np.ndarray, body: np.ndarray, sequence: str, label: np.ndarray | None = None,
             classes: int = 3) -> np.ndarray:
    """(X, Y, Z) intensities, body -> (X, Y, Z) bool: the CSF-side class of a ``classes``-class
    multi-Otsu of the body's intensities (see module); more classes, a narrower CSF class."""
    v = channel[body]
    if v.size < classes or np.ptp(v) == 0:
        return np.zeros(body.shape, bool)
    thresholds = threshold_multiotsu(v, classes=classes)
    low, high = thresholds[0], thresholds[-1]
    seq = (sequence or "").split(",")[0].strip().lower()
    csf = (channel > high) if seq in CSF_BRIGHT else (channel <= low)
    csf &= body
    if label is not None:
        csf &= ~(label > 0)
    return csf


def top_voxels(map_: np.ndarray, body: np.ndarray, top_percent: float = 1.0) -> np.ndarray:
    """(X, Y, Z) bool: the top ``top_percent`` % of the map's body voxels (at least one)."""
    v = map_[body]
    out = np.zeros(body.shape, bool)
    if v.size == 0:
        return out
    k = max(1, int(np.ceil(v.size * top_percent / 100.0)))
    top = np.zeros(v.size, bool)
    top[np.argpartition(v, v.size - k)[v.size - k:]] = True
    out[body] = top
    return out


def false_alarm_shares(map_: np.ndarray, body: np.ndarray, spacing: tuple[float, ...], csf: np.ndarray,
                       rim_mm: float = 3.0, top_percent: float = 1.0) -> dict[str, float]:
    """Shares of the top ``top_percent`` % body voxels: within ``rim_mm`` of the edge (rim), in CSF,
    in either (rim_or_csf)."""
    top = top_voxels(map_, body, top_percent)
    n = max(int(top.sum()), 1)
    rim = (edge_distance_mm(body, spacing) <= rim_mm) & body
    return {"rim": float((top & rim).sum() / n), "csf": float((top & csf).sum() / n),
            "rim_or_csf": float((top & (rim | csf)).sum() / n)}
