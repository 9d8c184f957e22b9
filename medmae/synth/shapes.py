"""Geometric building blocks of the phantoms, evaluated at points in millimetres.

Points are float32 arrays ``pts`` of shape (3, ...) holding x, y, z (RAS mm, anatomy
centred at the origin). Shapes return arrays of shape (...). Everything is pointwise, so
a phantom can be rendered slab by slab at any size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation about x, then y, then z, by the given angles in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation by up to ``max_deg`` degrees about each axis."""
    return rotation_matrix(rng.uniform(-max_deg, max_deg, size=3))


def mirror_x(rot: np.ndarray) -> np.ndarray:
    """The rotation of the left-right mirror image of a shape rotated by ``rot``."""
    m = np.diag([-1.0, 1.0, 1.0])
    return m @ rot @ m


def _local(pts: np.ndarray, centre: Sequence[float], rot: np.ndarray | None) -> np.ndarray:
    """Points in the shape's frame: (3, ...) -> (3, ...)."""
    d = pts - np.asarray(centre, dtype=np.float32).reshape((3,) + (1,) * (pts.ndim - 1))
    if rot is None:
        return d
    return np.tensordot(np.asarray(rot, dtype=np.float32).T, d, axes=1)


def ellipsoid_radius(pts: np.ndarray, centre: Sequence[float], radii: Sequence[float],
                     rot: np.ndarray | None = None) -> np.ndarray:
    """Normalised radius (...): < 1 inside the ellipsoid, 1 on its surface."""
    q = _local(pts, centre, rot)
    r = np.asarray(radii, dtype=np.float32).reshape((3,) + (1,) * (pts.ndim - 1))
    return np.sqrt(np.sum((q / r) ** 2, axis=0))


def ellipsoid(pts: np.ndarray, centre: Sequence[float], radii: Sequence[float],
              rot: np.ndarray | None = None) -> np.ndarray:
    """bool (...): inside the (rotated) ellipsoid."""
    return ellipsoid_radius(pts, centre, radii, rot) < 1.0


def ellipsoid_depth(pts: np.ndarray, centre: Sequence[float], radii: Sequence[float],
                    rot: np.ndarray | None = None) -> np.ndarray:
    """Approximate depth below the surface in mm (...): > 0 inside, < 0 outside.

    Exact for a sphere; for an ellipsoid it scales the normalised radius by the mean radius.
    """
    return (1.0 - ellipsoid_radius(pts, centre, radii, rot)) * float(np.mean(radii))


def tube(pts: np.ndarray, centre_xy: Sequence[float], radii_xy: Sequence[float],
         z_range: Sequence[float]) -> np.ndarray:
    """bool (...): inside an elliptic cylinder along z between ``z_range`` (mm)."""
    x = (pts[0] - centre_xy[0]) / radii_xy[0]
    y = (pts[1] - centre_xy[1]) / radii_xy[1]
    return (x * x + y * y < 1.0) & (pts[2] >= z_range[0]) & (pts[2] < z_range[1])


def ellipse_depth_xy(pts: np.ndarray, centre_xy: Sequence[float], radii_xy: Sequence[float]) -> np.ndarray:
    """Approximate depth in mm below the wall of an elliptic cylinder along z (...)."""
    x = (pts[0] - centre_xy[0]) / radii_xy[0]
    y = (pts[1] - centre_xy[1]) / radii_xy[1]
    return (1.0 - np.sqrt(x * x + y * y)) * float(min(radii_xy))


class SmoothNoise:
    """A smooth random field N(0, 1) over the box ``[-extent, extent]`` (mm, per axis),
    correlated over about ``scale_mm``.

    White noise on a coarse grid (cell = scale / 3) is Gaussian-smoothed, rescaled to
    unit standard deviation and interpolated linearly at any point (nearest value
    outside the box).
    """

    def __init__(self, rng: np.random.Generator, extent_mm: Sequence[float] | float, scale_mm: float):
        extent = np.broadcast_to(np.asarray(extent_mm, dtype=np.float64), (3,))
        if scale_mm <= 0 or np.any(extent <= 0):
            raise ValueError(f"extent_mm and scale_mm must be > 0, got {extent_mm}, {scale_mm}")
        self.cell = scale_mm / 3.0
        self.lo = (-extent).astype(np.float32).reshape(3, 1)
        n = tuple(int(np.ceil(2 * e / self.cell)) + 2 for e in extent)
        field = ndimage.gaussian_filter(rng.standard_normal(n, dtype=np.float32), sigma=1.5, mode="wrap")
        self.values = field / field.std()

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """(3, ...) points in mm -> (...) float32 values."""
        coords = (pts.reshape(3, -1) - self.lo) / self.cell
        out = ndimage.map_coordinates(self.values, coords, order=1, mode="nearest")
        return out.reshape(pts.shape[1:])


class Deformation:
    """A smooth random displacement field: ``warp(pts) = pts + amplitude * noise(pts)``."""

    def __init__(self, rng: np.random.Generator, extent_mm: Sequence[float] | float, scale_mm: float,
                 amplitude_mm: float):
        self.amplitude = float(amplitude_mm)
        self.fields = [SmoothNoise(rng, extent_mm, scale_mm) for _ in range(3)]

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """(3, ...) -> (3, ...) displaced points."""
        return pts + self.amplitude * np.stack([f(pts) for f in self.fields])
