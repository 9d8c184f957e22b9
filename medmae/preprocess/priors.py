"""Cheap anatomical priors for the masking strategies: tissue classes and supervoxels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu
from skimage.segmentation import relabel_sequential, slic
from skimage.transform import downscale_local_mean


def tissue_classes(channel: np.ndarray, body: np.ndarray, classes: int) -> tuple[np.ndarray, list[float]]:
    """Multi-Otsu classes of (X, Y, Z) ``channel`` inside ``body``.

    Returns uint8 (X, Y, Z) with values 1..``classes`` inside the body (1 = darkest), 0
    outside, and the ``classes - 1`` thresholds. The histogram has 256 bins up to 4 classes
    and 64 beyond (the search grows steeply with classes: 5 classes at 256 bins take ~8 s,
    6 take minutes). Raises ValueError when the body's intensities have too few distinct
    values for ``classes``.
    """
    inside = channel[body]
    try:
        thresholds = threshold_multiotsu(inside, classes=classes, nbins=256 if classes <= 4 else 64)
    except ValueError as e:
        raise ValueError(f"cannot split the body's intensities into {classes} tissue classes ({e})") from None
    out = np.zeros(channel.shape, dtype=np.uint8)
    out[body] = np.digitize(inside, thresholds) + 1
    return out, [float(t) for t in thresholds]


def supervoxels(image: np.ndarray, body: np.ndarray, n_segments: int, compactness: float,
                downsample: int = 1) -> np.ndarray:
    """SLIC supervoxels of (C, X, Y, Z) ``image`` restricted to ``body``.

    With ``downsample`` f > 1, SLIC runs on f-times coarser block means (about f**3 times
    faster) and its labels are brought back by nearest neighbour. Returns int32 (X, Y, Z):
    labels 1..N inside the body (N close to ``n_segments``), 0 outside.
    ``n_segments == 0`` or an empty body gives all zeros.
    """
    if n_segments == 0 or not body.any():
        return np.zeros(body.shape, dtype=np.int32)
    f = (downsample,) * 3
    small = np.stack([downscale_local_mean(ch, f) for ch in image]) if downsample > 1 else image
    small_body = downscale_local_mean(body.astype(np.float32), f) >= 0.5 if downsample > 1 else body
    if not small_body.any():
        small, small_body, downsample = image, body, 1
    labels = slic(np.moveaxis(small, 0, -1), n_segments=n_segments, compactness=compactness,
                  mask=small_body, channel_axis=-1, start_label=1, enforce_connectivity=True)
    if downsample > 1:
        labels = _upsample_labels(labels, downsample, body.shape)
    labels[~body] = 0
    return relabel_sequential(labels.astype(np.int32))[0]


def _upsample_labels(labels: np.ndarray, factor: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Coarse (x, y, z) labels -> (X, Y, Z): unlabelled coarse voxels take the nearest label,
    then every coarse voxel is repeated ``factor`` times per axis."""
    idx = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    filled = labels[tuple(idx)]
    for axis in range(3):
        filled = filled.repeat(factor, axis=axis)
    return filled[: shape[0], : shape[1], : shape[2]]
