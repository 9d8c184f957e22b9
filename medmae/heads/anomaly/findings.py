"""Per-case findings: each connected component of the binary map, measured on the source scan's grid.

A finding is one 26-connected component of ``binary.nii.gz`` (calibrated runs). Its peak is
the voxel of the highest anomaly-map value inside it; the location is given at that peak in
world millimetres (RAS+ as NIfTI and nibabel, LPS+ as DICOM and ITK) and as the source
scan's voxel indices (i, j, k; for a DICOM series i = column, j = row, k = slice in order
along the slice normal). Findings are sorted by peak, highest first. An uncalibrated run has no binary map: it
lists the top :data:`HOTSPOTS` distinct hotspots instead. The first is the maximum inside
the body; each next one is the highest voxel outside the regions already listed and at
least :data:`HOTSPOT_SPACING_MM` from their peaks. A hotspot's region is the 26-connected
set of voxels around its peak whose map value is at least half the peak (its volume and
mean are those of that region).

Ties in the peak are broken by the map smoothed by a Gaussian of :data:`PEAK_SMOOTH_MM`
inside the body (:func:`peak_map`), so a region outranks a lone voxel of the same height.
Ties are common where preprocessing clips intensities: on FLAIR a large lesion's voxels and
scattered bright voxels all sit at the clip value, and breaking those ties by array order
sent the first hotspot of the intensity baseline away from both glioma lesions of the
development set (issue 20).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

LPS = np.diag([-1.0, -1.0, 1.0])
HOTSPOTS = 3
"""Hotspots listed for a run without a binary map (uncalibrated)."""
HOTSPOT_SPACING_MM = 20.0
"""Minimum distance (world mm) between the peaks of two listed hotspots."""
PEAK_SMOOTH_MM = 2.0
"""Gaussian sigma (world mm) of the map that peaks are ranked on."""


def peak_map(map_: np.ndarray, allowed: np.ndarray, affine: np.ndarray, sigma_mm: float = PEAK_SMOOTH_MM) -> np.ndarray:
    """(X, Y, Z) map smoothed by a Gaussian of ``sigma_mm`` (voxel sizes from ``affine``),
    normalised by the smoothed ``allowed`` mask so voxels near its edge are not pulled down;
    -inf outside ``allowed``."""
    sigma = [sigma_mm / float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)]
    inside = allowed.astype(np.float32)
    weight = ndimage.gaussian_filter(inside, sigma)
    value = ndimage.gaussian_filter(np.where(allowed, map_, 0.0).astype(np.float32), sigma)
    return np.where(allowed, value / np.maximum(weight, 1e-6), -np.inf)


@dataclass
class Finding:
    """One flagged region. ``voxel``: source (i, j, k); ``ras``/``lps``: world mm at the peak."""

    rank: int
    volume_ml: float
    peak: float
    mean: float
    voxel: tuple[int, int, int]
    ras: tuple[float, float, float]
    lps: tuple[float, float, float]
    slice_index: int
    slices: int
    kind: str = "component"

    def as_dict(self) -> dict:
        return asdict(self)


def _world(affine: np.ndarray, ijk: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    ras = affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]
    return ras, LPS @ ras


def _finding(rank: int, map_: np.ndarray, region: np.ndarray, affine: np.ndarray, kind: str,
             offset: tuple[int, int, int] = (0, 0, 0)) -> Finding:
    """``region``: bool mask of ``map_`` (a sub-block of the scan starting at ``offset``)."""
    values = np.where(region, map_, -np.inf)
    local = np.unravel_index(int(np.argmax(values)), map_.shape)
    ijk = tuple(int(i + o) for i, o in zip(local, offset))
    ras, lps = _world(affine, ijk)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    inside = map_[region]
    return Finding(rank, float(region.sum()) * voxel_ml, float(map_[local]), float(inside.mean()), ijk,
                   tuple(round(float(v), 1) for v in ras), tuple(round(float(v), 1) for v in lps),
                   ijk[2], 0, kind)


def find_regions(map_: np.ndarray, binary: np.ndarray | None, body: np.ndarray | None, affine: np.ndarray,
                 most: int = 20) -> list[Finding]:
    """(X, Y, Z) map and binary map on one grid with its (4, 4) RAS affine -> findings, highest peak first.

    Without a binary map: one "hotspot" finding, the map's maximum inside ``body``.
    """
    if binary is None:
        region = body if body is not None and body.any() else np.ones(map_.shape, bool)
        found = [_finding(rank, map_, r, affine, "hotspot") for rank, r in enumerate(hotspots(map_, region, affine), 1)]
    else:
        lab, n = ndimage.label(binary > 0, structure=np.ones((3, 3, 3), bool))
        peaks, smooth = np.full(n + 1, -np.inf), np.full(n + 1, -np.inf)
        inside = lab > 0
        np.maximum.at(peaks, lab[inside], map_[inside])
        np.maximum.at(smooth, lab[inside], peak_map(map_, inside, affine)[inside])
        boxes = ndimage.find_objects(lab)
        found = []
        for rank, i in enumerate(np.lexsort((-smooth[1:], -peaks[1:]))[:most], 1):
            box = boxes[int(i)]
            found.append(_finding(rank, map_[box], lab[box] == int(i) + 1, affine, "component",
                                  tuple(b.start for b in box)))
    for f in found:
        f.slices = int(map_.shape[2])
    return found


def _half_max_region(map_: np.ndarray, allowed: np.ndarray, peak: tuple[int, ...]) -> np.ndarray:
    """The 26-connected voxels of ``allowed`` around ``peak`` with map >= half the peak value."""
    level = map_[peak] / 2.0 if map_[peak] > 0 else map_[peak]
    lab, _ = ndimage.label(allowed & (map_ >= level), structure=np.ones((3, 3, 3), bool))
    return lab == lab[peak] if lab[peak] else np.zeros(map_.shape, bool)


def hotspots(map_: np.ndarray, body: np.ndarray, affine: np.ndarray, count: int = HOTSPOTS,
             spacing_mm: float = HOTSPOT_SPACING_MM) -> list[np.ndarray]:
    """Up to ``count`` distinct hotspot regions (bool (X, Y, Z) masks), highest peak first."""
    free = body.copy()
    peaks, regions = [], []
    raw = np.where(body, map_, -np.inf).ravel()
    order = np.lexsort((-peak_map(map_, body, affine).ravel(), -raw))  # peak first, then the smoothed map
    for flat in order[:int(body.sum())]:
        if len(regions) == count or not free.any():
            break
        ijk = np.unravel_index(int(flat), map_.shape)
        if not free[ijk]:
            continue
        world = affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]
        if any(np.linalg.norm(world - p) < spacing_mm for p in peaks):
            continue
        region = _half_max_region(map_, free, ijk)
        region[ijk] = True
        free &= ~region
        peaks.append(world)
        regions.append(region)
    return regions


def case_findings(folder: Path, most: int = 20) -> tuple[list[Finding], int]:
    """Findings of one ``score`` case folder (source-grid NIfTIs); returns (findings shown, components in all)."""
    ref = nib.load(folder / "anomaly.nii.gz")
    map_ = np.asarray(ref.dataobj, np.float32)
    binary = np.asarray(nib.load(folder / "binary.nii.gz").dataobj) > 0 if (folder / "binary.nii.gz").is_file() else None
    body = np.asarray(nib.load(folder / "body.nii.gz").dataobj) > 0 if (folder / "body.nii.gz").is_file() else None
    total = 1 if binary is None else int(ndimage.label(binary, structure=np.ones((3, 3, 3), bool))[1])
    return find_regions(map_, binary, body, np.asarray(ref.affine, float), most), total


def preview_voxel(f: Finding, preview_affine: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A finding's peak on the preview (preprocessed RAS) grid, clipped into it."""
    ijk = np.linalg.solve(preview_affine[:3, :3], np.asarray(f.ras, float) - preview_affine[:3, 3])
    return tuple(int(np.clip(np.rint(v), 0, s - 1)) for v, s in zip(ijk, shape[:3]))


def healthy_rank(percentile: float | None, healthy: int, minimum: int) -> str:
    """'above 3 of 3 healthy scans' from a percentile over ``healthy`` scans; 'insufficient' below ``minimum``."""
    if percentile is None or healthy <= 0:
        return "not calibrated"
    below = int(round(percentile * healthy / 100.0))
    scans = f"{healthy} healthy scan{'s' if healthy != 1 else ''}"
    if healthy < minimum:
        return f"insufficient: calibrated on {scans}, fewer than {minimum}"
    return f"above {below} of {scans}"
