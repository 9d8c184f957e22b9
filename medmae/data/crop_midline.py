"""The mid-sagittal plane of each crop, for symmetric masking.

Preprocessing stores each case's plane in meta.json (``"midline": {"axis": 0, "index": x}``,
voxels of the cached array, see :func:`medmae.preprocess.midline.midline_meta`). A crop
whose box starts at voxel ``start`` along axis 0 has the plane at ``x - start`` crop voxels;
a flip of axis 0 (or a half turn in axes (0, 1)) moves it to ``size - 1 - (x - start)``; a
quarter turn puts the left-right axis on axis 1, and the crop then has no plane along axis 0
(NaN), like a case without a stored midline.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from medmae.preprocess.cache import CachedCase

log = logging.getLogger(__name__)

MIN_SCORE = 0.5
"""Planes whose left-right correlation is below this are not used: on brains it is 0.65-1;
on the test abdomen CT it is 0.38, for a plane 79 mm off the spine (liver against spleen)."""


MISSING = (f"have no midline in meta.json, or one with a score below {MIN_SCORE:.2f}: symmetric masking gives "
           "their crops no mirror. A cache built before planes were stored gets them by re-running `medmae "
           "preprocess` with the same config (only the plane is computed, about 1 s per case)")
"""How a case without a usable plane is reported (by the loader, and by pretraining's preflight)."""


def case_midline(case: CachedCase) -> float:
    """The case's plane along axis 0 in cached voxels; NaN when meta.json has none or its
    score is below :data:`MIN_SCORE`."""
    mid = case.meta.get("midline")
    if not isinstance(mid, dict) or mid.get("axis", 0) != 0 or mid.get("index") is None:
        return math.nan
    if float(mid.get("score", 1.0)) < MIN_SCORE:
        return math.nan
    return float(mid["index"])


def case_midlines(cases: Sequence[CachedCase]) -> np.ndarray:
    """(n_cases,) float64 planes; logs one line naming how many cases have none (at DEBUG: it
    matters only to symmetric masking, whose pretraining preflight warns about it)."""
    out = np.array([case_midline(c) for c in cases], dtype=np.float64)
    missing = int(np.isnan(out).sum())
    if missing:
        example = next(c.case_id for c, m in zip(cases, out) if np.isnan(m))
        log.debug("%d of %d cached cases (e.g. %s) %s", missing, len(cases), example, MISSING)
    return out


def crop_midline(midline: np.ndarray, start_x: np.ndarray, size_x: int, reversed_x: np.ndarray,
                 lr_on_axis0: np.ndarray) -> np.ndarray:
    """Plane along crop axis 0, in crop voxels, per crop: (B,) float32 (NaN = no plane).

    midline: (B,) case planes (cached voxels, NaN allowed); start_x: (B,) crop box start
    along axis 0; reversed_x: (B,) bool, crop axis 0 runs backwards (flip / half turn);
    lr_on_axis0: (B,) bool, crop axis 0 is still the left-right axis (no quarter turn).
    """
    local = np.asarray(midline, np.float64) - np.asarray(start_x, np.float64)
    local = np.where(np.asarray(reversed_x, bool), (size_x - 1) - local, local)
    return np.where(np.asarray(lr_on_axis0, bool), local, np.nan).astype(np.float32)
