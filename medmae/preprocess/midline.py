"""Mid-sagittal plane of a RAS volume: the left-right mirror plane that best matches the scan.

The scans are already reoriented to RAS, so the plane is taken perpendicular to axis 0
(left-right) and only its position is estimated: the ``c`` (in voxels of the given array)
for which the reflection ``x -> 2c - x`` maximises the intensity correlation between the
two hemispheres inside the body. Half-voxel candidates are scored on a downsampled copy,
then refined at full resolution and to sub-voxel precision with a parabola through the
best score and its neighbours.
"""

from __future__ import annotations

import numpy as np


def reflection_score(image: np.ndarray, body: np.ndarray, k: int) -> float:
    """Correlation of ``image`` with its reflection about ``c = k / 2`` (voxels, axis 0).

    ``image`` and ``body`` are (X, Y, Z). Voxel x is paired with x' = k - x; only pairs where
    both voxels lie inside the array and inside the body count. Returns -1 when fewer than
    64 pairs overlap or the overlap is constant.
    """
    n = image.shape[0]
    lo, hi = max(0, k - (n - 1)), min(n - 1, k)  # x range with 0 <= k - x <= n - 1
    if hi - lo < 1:
        return -1.0
    a = image[lo:hi + 1]
    b = image[k - hi:k - lo + 1][::-1]
    m = body[lo:hi + 1] & body[k - hi:k - lo + 1][::-1]
    if m.sum() < 64:
        return -1.0
    a, b = a[m].astype(np.float64), b[m].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else -1.0


def _best_k(image: np.ndarray, body: np.ndarray, ks: range) -> tuple[int, dict[int, float]]:
    scores = {k: reflection_score(image, body, k) for k in ks}
    return max(scores, key=scores.get), scores


def estimate_midline(image: np.ndarray, body: np.ndarray | None = None, search: float = 0.25,
                     coarse: int = 2) -> float:
    """Position of the mid-sagittal plane along axis 0, in voxels of ``image``.

    ``image``: (X, Y, Z) or (C, X, Y, Z) (the first channel is used), RAS. ``body``: (X, Y, Z)
    bool, where to compare intensities (default: everywhere). ``search``: the plane is looked
    for within ``search`` × X voxels of the body's left-right centre. ``coarse``: the
    downsampling factor of the first pass. Returns a float (the plane may fall between voxels).
    """
    img = np.asarray(image[0] if image.ndim == 4 else image, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"expected an (X, Y, Z) or (C, X, Y, Z) image, got shape {image.shape}")
    msk = np.ones(img.shape, bool) if body is None else np.asarray(body, bool)
    if not msk.any():
        raise ValueError("empty body mask: no midline to estimate")
    centre = float(np.nonzero(msk.any(axis=(1, 2)))[0].mean())
    radius = max(2.0, search * img.shape[0])
    f = max(1, int(coarse))
    small, small_m = img[::f, ::f, ::f], msk[::f, ::f, ::f]
    k0 = int(round(2 * centre / f))
    r = int(np.ceil(2 * radius / f))
    k_small, _ = _best_k(small, small_m, range(max(0, k0 - r), k0 + r + 1))
    k_centre = k_small * f
    k_best, scores = _best_k(img, msk, range(max(0, k_centre - 2 * f), k_centre + 2 * f + 1))
    for k in (k_best - 1, k_best + 1):
        scores.setdefault(k, reflection_score(img, msk, k))
    s0, s1, s2 = scores[k_best - 1], scores[k_best], scores[k_best + 1]
    den = s0 - 2 * s1 + s2
    offset = 0.5 * (s0 - s2) / den if den < 0 else 0.0
    return float((k_best + float(np.clip(offset, -0.5, 0.5))) / 2.0)


MAX_VOXELS = 2_000_000
""":func:`midline_meta` estimates on a strided copy of at most about this many voxels (~1 s)."""


def midline_meta(image: np.ndarray, body: np.ndarray, max_voxels: int = MAX_VOXELS) -> dict:
    """The mid-sagittal plane as stored in a cached case's meta.json.

    ``image`` (C, X, Y, Z) or (X, Y, Z) and ``body`` (X, Y, Z) are the cached (RAS) arrays.
    Large volumes are estimated on every s-th voxel per axis (s the smallest stride that
    leaves at most ``max_voxels``), and the plane is scaled back to the cached grid: at
    1.5 mm, a brain needs no striding and a whole-body CT is estimated at 3-4.5 mm, well
    inside one patch. Returns ``{"axis": 0, "index": float (voxels of the cached array),
    "score": float}``, the score being the left-right intensity correlation about the plane
    (about 0.9 on brains, lower on a body trunk; -1 when it cannot be measured).
    """
    img = np.asarray(image[0] if image.ndim == 4 else image)
    msk = np.asarray(body, bool)
    s = 1
    while img[::s, ::s, ::s].size > max_voxels:
        s += 1
    small, small_m = img[::s, ::s, ::s], msk[::s, ::s, ::s]
    c = estimate_midline(small, small_m)
    score = reflection_score(small.astype(np.float32), small_m, int(round(2 * c)))
    return {"axis": 0, "index": round(float(c * s), 3), "score": round(float(score), 4)}
