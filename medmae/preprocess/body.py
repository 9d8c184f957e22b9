"""Body / foreground mask: threshold, closing, hole filling, largest component."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from medmae.preprocess.config import BodyMaskConfig


def threshold_mask(image: np.ndarray, modality: str, cfg: BodyMaskConfig) -> np.ndarray:
    """(C, X, Y, Z) raw intensities -> bool (X, Y, Z): above threshold in any channel.

    CT: HU > ``cfg.ct_threshold_hu``. MR: > Otsu's threshold of the channel (or the fixed
    ``cfg.mr_threshold``).
    """
    mask = np.zeros(image.shape[1:], dtype=bool)
    for channel in image:
        if modality == "CT":
            t = cfg.ct_threshold_hu
        elif cfg.mr_threshold == "otsu":
            t = threshold_otsu(channel) if channel.max() > channel.min() else channel.max()
        else:
            t = float(cfg.mr_threshold)
        mask |= channel > t
    return mask


def ellipsoid(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """bool structuring element: a ball of ``radius_mm`` on a grid of ``spacing`` mm."""
    r = [max(int(np.floor(radius_mm / s)), 0) for s in spacing]
    grids = np.ogrid[tuple(slice(-n, n + 1) for n in r)]
    dist = sum((g * s / radius_mm) ** 2 for g, s in zip(grids, spacing))
    return dist <= 1.0


def close(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Morphological closing with an ellipsoid; edges are replicated so borders don't erode."""
    ball = ellipsoid(radius_mm, spacing)
    pad = [(n // 2, n // 2) for n in ball.shape]
    padded = np.pad(mask, pad, mode="edge")
    closed = ndimage.binary_closing(padded, structure=ball)
    return closed[tuple(slice(a, a + n) for (a, _), n in zip(pad, mask.shape))]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes in 3D, then in every axial (k) slice, for cavities open at the volume's ends."""
    mask = ndimage.binary_fill_holes(mask)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def body_mask(image: np.ndarray, modality: str, spacing: tuple[float, float, float],
              cfg: BodyMaskConfig) -> np.ndarray:
    """(C, X, Y, Z) raw intensities on a ``spacing`` mm grid -> bool (X, Y, Z) body mask."""
    mask = threshold_mask(image, modality, cfg)
    if cfg.closing_mm > 0:
        mask = close(mask, cfg.closing_mm, spacing)
    if cfg.fill_holes:
        mask = fill_holes(mask)
    if cfg.largest_component:
        mask = largest_component(mask)
    return mask
