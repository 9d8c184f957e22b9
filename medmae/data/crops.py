"""Where crops go: foreground points per case, crop corners, and cutting a crop out of a
(memory-mapped) array with padding where it reaches past the volume.

A crop is the box ``start .. start + size`` in voxel indices; ``start`` may be negative
or the box may end past the volume when the volume is smaller than the crop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def start_bounds(shape: Sequence[int], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (lo, hi) of a crop's start: [0, S - K] when the volume is larger than the
    crop (crop fully inside), [S - K, 0] when smaller (crop covers the whole axis)."""
    d = np.asarray(shape, dtype=np.int64) - np.asarray(size, dtype=np.int64)
    return np.minimum(d, 0), np.maximum(d, 0)


def foreground_points(body: np.ndarray, size: Sequence[int], max_points: int,
                      rng: np.random.Generator, slab: int = 16) -> np.ndarray:
    """A random sample of body voxels to centre crops on: (N, 3) uint16, N about ``max_points``.

    Only voxels that can be a crop's centre without moving the crop (centre = start +
    size // 2 with start inside :func:`start_bounds`) are kept, so a foreground crop is
    centred exactly on a body voxel; when the body has no such voxel every body voxel is
    used (the crop then holds the point, off-centre). Reads ``body`` (X, Y, Z) slab by
    slab, so a memory map is scanned without loading it whole.
    """
    half = np.asarray(size) // 2
    lo, hi = start_bounds(body.shape, size)
    box = [slice(max(0, int(a + h)), min(n, int(b + h) + 1)) for a, b, h, n in zip(lo, hi, half, body.shape)]
    pts = _sample_nonzero(body, box, max_points, rng, slab)
    if len(pts) == 0:
        pts = _sample_nonzero(body, [slice(0, n) for n in body.shape], max_points, rng, slab)
    return pts


def _sample_nonzero(body: np.ndarray, box: list[slice], max_points: int,
                    rng: np.random.Generator, slab: int) -> np.ndarray:
    """Nonzero voxels of ``body[box]``, each kept with chance max_points / count: (N, 3) uint16."""
    x0, x1 = box[0].start, box[0].stop
    rest = tuple(box[1:])
    counts = [int(np.count_nonzero(body[x:min(x + slab, x1)][(slice(None),) + rest])) for x in range(x0, x1, slab)]
    total = sum(counts)
    if total == 0:
        return np.zeros((0, 3), dtype=np.uint16)
    keep = min(1.0, max_points / total)
    out = []
    for x, n in zip(range(x0, x1, slab), counts):
        if n == 0:
            continue
        idx = np.argwhere(body[x:min(x + slab, x1)][(slice(None),) + rest])
        if keep < 1.0:
            idx = idx[rng.random(len(idx)) < keep]
        out.append(idx + np.array([x, rest[0].start, rest[1].start]))
    return np.concatenate(out).astype(np.uint16)


def crop_starts(shape: Sequence[int], size: Sequence[int], n: int, points: np.ndarray,
                foreground_prob: float, rng: np.random.Generator) -> np.ndarray:
    """Starts of ``n`` crops: (n, 3) int64.

    Each crop is, with chance ``foreground_prob`` (and when ``points`` is not empty),
    centred on a random row of ``points`` (N, 3), else placed uniformly; starts are kept
    inside :func:`start_bounds`.
    """
    lo, hi = start_bounds(shape, size)
    starts = rng.integers(lo, hi + 1, size=(n, 3))
    fg = rng.random(n) < foreground_prob
    if len(points) and fg.any():
        centres = points[rng.integers(0, len(points), size=int(fg.sum()))].astype(np.int64)
        starts[fg] = np.clip(centres - np.asarray(size) // 2, lo, hi)
    return starts


def read_crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float | int) -> np.ndarray:
    """Copy the box ``start .. start + size`` of the last three axes of ``array`` (..., X, Y, Z),
    filling what lies outside the array with ``fill``: (..., *size), ``array``'s dtype."""
    spatial = array.shape[-3:]
    src, dst = [], []
    for s, k, n in zip(start, size, spatial):
        a, b = max(int(s), 0), min(int(s) + int(k), n)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - int(s), a - int(s) + max(0, b - a)))
    lead = array.shape[:-3]
    if all(d.start == 0 and d.stop == k for d, k in zip(dst, size)):
        return np.array(array[(Ellipsis, *src)])
    out = np.full(lead + tuple(int(k) for k in size), fill, dtype=array.dtype)
    out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]
    return out
