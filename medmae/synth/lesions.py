"""Lesions: rotated ellipsoids placed well inside a host tissue and clipped to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from medmae.synth.shapes import ellipsoid, random_rotation

# Directions checked around a candidate centre: the 6 axes and the 8 diagonals.
_DIRECTIONS = np.concatenate([np.eye(3), -np.eye(3),
                              np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]) / np.sqrt(3)])


@dataclass
class Lesion:
    """One lesion, in anatomy coordinates (mm): centre (3,), radii (3,), rotation (3, 3)."""

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    value: float

    def inside(self, p: np.ndarray) -> np.ndarray:
        """(3, ...) points -> (...) bool."""
        return ellipsoid(p, self.centre, self.radii, self.rotation)


def place_lesions(labels_at: Callable[[np.ndarray], np.ndarray], host: int, candidates: np.ndarray,
                  count: int, radius_mm: tuple[float, float], value: Callable[[], float],
                  rng: np.random.Generator) -> list[Lesion]:
    """Put ``count`` lesions where a ball of their size lies inside label ``host``.

    labels_at:  (3, N) anatomy points -> (N,) labels.
    candidates: (3, N) anatomy points to choose centres from (e.g. random voxels).
    A centre is kept when it and 14 points on a sphere of the lesion's largest radius
    are all ``host``; the radius shrinks (down to ``radius_mm[0]``) when nothing fits.
    Returns fewer lesions only when the host is too thin to hold any.
    """
    lab = labels_at(candidates)
    pool = candidates[:, lab == host]
    lesions: list[Lesion] = []
    if pool.shape[1] == 0:
        return lesions
    for _ in range(count):
        radii = rng.uniform(radius_mm[0], radius_mm[1]) * rng.uniform(0.75, 1.0, size=3)
        for _attempt in range(6):
            order = rng.permutation(pool.shape[1])[:256]
            centres = pool[:, order]  # (3, M)
            probe = centres[:, None, :] + radii.max() * _DIRECTIONS.T[:, :, None]  # (3, 14, M)
            ok = np.all(labels_at(probe.reshape(3, -1)).reshape(14, -1) == host, axis=0)
            if ok.any():
                c = centres[:, int(np.argmax(ok))]
                lesions.append(Lesion(c.astype(np.float64), radii, random_rotation(rng, 90.0), value()))
                break
            radii = np.maximum(radii * 0.7, radius_mm[0])
    return lesions
