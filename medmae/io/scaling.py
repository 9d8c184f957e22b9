"""Stored voxel values to real ones: ``raw * slope + intercept`` (NIfTI scl_*, DICOM RescaleSlope/Intercept)."""

from __future__ import annotations

import numpy as np


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
