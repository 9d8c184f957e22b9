"""From error statistics to the maps a reader sees, the intensity baseline, and case scores.

All maps live on the preprocessed grid, are >= 0 and are 0 outside the body mask.

- anomaly map: per ``score.map`` (squared / brighter / darker / absolute error);
- intensity baseline: the robust z-score ``(x - median) / (1.4826 MAD)`` of one channel
  inside the body, kept on the chosen side of 0;
- combined (``score.combine``: mean, geometric or min) of the anomaly map and the baseline, each first divided by its own
  robust scale inside the body (``1.4826 x`` the median of its non-zero values, which for a
  one-sided map is the scale of the residual it was cut from), so both are in "typical
  deviations" and neither dominates by its units;
- case score (``score.case_statistic``): abnormal_ml, the volume of body voxels above
  ``score.abnormal_level`` robust scales of the map, or top_mean, the mean of the top ``q`` %
  of the map's values inside the body.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medmae.heads.anomaly.scorer import ErrorStats

MAD_TO_SD = 1.4826


def _channel(a: np.ndarray, channel: int | None) -> np.ndarray:
    if channel is None:
        return a.mean(0)
    if channel >= a.shape[0]:
        raise ValueError(f"channel {channel} does not exist (the scan has {a.shape[0]})")
    return a[channel]


def signed_part(values: np.ndarray, sign: str) -> np.ndarray:
    """Keep > 0 (brighter), < 0 as positive (darker) or |values| (absolute)."""
    if sign == "brighter":
        return np.maximum(values, 0.0)
    if sign == "darker":
        return np.maximum(-values, 0.0)
    if sign == "absolute":
        return np.abs(values)
    raise ValueError(f"unknown sign {sign!r}")


def inside(map_: np.ndarray, body: np.ndarray, median_filter: int = 0) -> np.ndarray:
    """``map_`` set to 0 outside the body, optionally median-filtered (width in voxels) first."""
    out = map_.astype(np.float32)
    if median_filter > 1:
        out = ndimage.median_filter(out, size=median_filter, mode="nearest")
    return np.where(body, out, 0.0).astype(np.float32)


def anomaly_map(stats: ErrorStats, kind: str, body: np.ndarray, channel: int | None = None,
                median_filter: int = 0) -> np.ndarray:
    """(X, Y, Z) anomaly map of ``kind`` (squared / brighter / darker / absolute)."""
    if kind == "squared":
        raw = _channel(stats.squared, channel)
    else:
        raw = signed_part(_channel(stats.residual, channel), kind)
    return inside(raw, body & stats.covered, median_filter)


def robust_z(channel: np.ndarray, body: np.ndarray) -> np.ndarray:
    """(X, Y, Z) -> robust z-score against the body's median and MAD (0 outside the body)."""
    v = channel[body].astype(np.float64)
    if v.size == 0:
        return np.zeros(channel.shape, np.float32)
    med = np.median(v)
    mad = MAD_TO_SD * np.median(np.abs(v - med))
    scale = mad if mad > 0 else (v.std() or 1.0)
    return np.where(body, (channel - med) / scale, 0.0).astype(np.float32)


def intensity_baseline(image: np.ndarray, body: np.ndarray, channel: int, sign: str) -> np.ndarray:
    """(C, X, Y, Z) -> (X, Y, Z) robust z-score of ``channel`` inside the body, one side kept."""
    if channel >= image.shape[0]:
        raise ValueError(f"baseline.channel {channel} does not exist (the scan has {image.shape[0]})")
    return signed_part(robust_z(image[channel], body), sign) * body


def robust_scale(map_: np.ndarray, body: np.ndarray) -> float:
    """1.4826 x the median of the map's NON-ZERO |values| inside the body (1 when there is none).

    For a two-sided map (|e|, e^2) this is the usual 1.4826 x median |v|. A one-sided map
    (max(e, 0)) is 0 on about half of the body; the median of all its values then lands on
    a zero or a rounding residue (~1e-7), and dividing by it made the combined map explode
    (issue 20). The positive values of a half-rectified symmetric residual are distributed
    as |e|, so their median gives the same scale as the two-sided map's."""
    v = np.abs(map_[body]).astype(np.float64)
    v = v[v > 0]
    return MAD_TO_SD * float(np.median(v)) if v.size else 1.0


def combined_map(anomaly: np.ndarray, baseline: np.ndarray, body: np.ndarray, rule: str = "mean") -> np.ndarray:
    """The two maps, each divided by its robust scale inside the body, combined by ``rule``:
    mean, geometric (sqrt of the product: both must be raised, in the same units) or min."""
    a = anomaly / robust_scale(anomaly, body)
    b = baseline / robust_scale(baseline, body)
    if rule == "mean":
        out = 0.5 * (a + b)
    elif rule == "geometric":
        out = np.sqrt(np.maximum(a, 0) * np.maximum(b, 0))
    elif rule == "min":
        out = np.minimum(a, b)
    else:
        raise ValueError(f"unknown combination rule {rule!r} (mean, geometric, min)")
    return np.where(body, out, 0.0).astype(np.float32)


def abnormal_ml(map_: np.ndarray, body: np.ndarray, level: float, voxel_ml: float) -> float:
    """Volume (ml) of body voxels whose map exceeds ``level`` x its robust scale in the body."""
    return float((map_[body] > level * robust_scale(map_, body)).sum()) * voxel_ml


def case_statistic(map_: np.ndarray, body: np.ndarray, kind: str, level: float, top_percent: float,
                   voxel_ml: float) -> float:
    """The case score ``kind`` (abnormal_ml / top_mean) of one (X, Y, Z) map."""
    if kind == "abnormal_ml":
        return abnormal_ml(map_, body, level, voxel_ml)
    return case_score(map_, body, top_percent)


def edge_distance_mm(body: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """(X, Y, Z) distance (mm) of each body voxel to the nearest voxel outside the body (0 outside)."""
    padded = np.pad(body, 1)  # the array border counts as outside
    return ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1].astype(np.float32)


EDGE_BANDS_MM = (1.5, 3.0, 4.5, 6.0, 9.0, 12.0)
"""Upper edges (mm) of the distance-to-edge bands of ``edge_normalised`` (the last band is open)."""


def edge_normalised(map_: np.ndarray, body: np.ndarray, spacing: tuple[float, ...],
                    bands_mm: tuple[float, ...] = EDGE_BANDS_MM) -> np.ndarray:
    """(X, Y, Z) map divided, in each band of distance to the mask edge, by its robust scale in
    that band, times its robust scale in the whole body (so the units stay the map's).

    The error expected at a place: reconstruction errs more near the mask's edge (a hidden
    token there must guess where the brain ends); this removes that trend within the case, with
    no healthy data. Robust as long as a lesion is less than half of a band's non-zero voxels."""
    d = edge_distance_mm(body, spacing)
    overall = robust_scale(map_, body)
    out = np.zeros(map_.shape, np.float32)
    edges = (0.0, *bands_mm, np.inf)
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = body & (d > lo) & (d <= hi)
        if band.any():
            out[band] = map_[band] * (overall / robust_scale(map_, band))
    return out


def case_score(map_: np.ndarray, body: np.ndarray, top_percent: float) -> float:
    """Mean of the top ``top_percent`` % of the map inside the body (at least one voxel)."""
    v = map_[body]
    if v.size == 0:
        return 0.0
    k = max(1, int(np.ceil(v.size * top_percent / 100.0)))
    return float(np.partition(v, v.size - k)[v.size - k:].mean())
