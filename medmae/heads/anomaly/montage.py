"""Per-case montage: axial, coronal and sagittal slices through the most anomalous region.

Drawn from the case's preview.npz (the preprocessed RAS grid, isotropic voxels): the scan
in grey, the anomaly map in colour where it exceeds the display threshold, the binary map
(if calibrated) as a yellow contour and the lesion mask (if known) as a green contour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medmae.atomic import atomic_write


def hotspot(map_: np.ndarray, body: np.ndarray) -> tuple[int, int, int]:
    """Voxel of the highest smoothed map value inside the body (the centre if the map is flat)."""
    smooth = ndimage.gaussian_filter(map_.astype(np.float32), 1.5) * body
    if not smooth.any():
        return tuple(int(s // 2) for s in map_.shape)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(smooth)), map_.shape))


def _views(a: np.ndarray, p: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial (z), coronal (y), sagittal (x) slices through p, rotated for display (anterior/superior up)."""
    return [np.rot90(a[:, :, p[2]]), np.rot90(a[:, p[1], :]), np.rot90(a[p[0], :, :])]


def save_montage(preview: dict, path: Path, threshold: float | None, title: str) -> tuple[Path, tuple[int, int, int]]:
    """Write the 3-view PNG; returns (path, hotspot voxel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, body, amap = preview["image"].astype(np.float32), preview["body"] > 0, preview["map_model"].astype(np.float32)
    p = hotspot(amap, body)
    shown = threshold if threshold is not None else float(np.percentile(amap[body], 99)) if body.any() else 0.0
    overlay = np.ma.masked_where(amap <= shown, amap)
    lo, hi = np.percentile(image[body], [1, 99]) if body.any() else (image.min(), image.max())
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3), dpi=80)
    names = ("axial", "coronal", "sagittal")
    extra = [(preview.get("binary"), "yellow"), (preview.get("label"), "lime")]
    for ax, name, img, ov in zip(axes, names, _views(image, p), _views(overlay, p)):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.imshow(ov, cmap="autumn", alpha=0.6, interpolation="nearest", vmin=shown, vmax=float(amap.max()) or 1.0)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    for mask, colour in extra:
        if mask is not None and mask.any():
            for ax, sl in zip(axes, _views(mask.astype(np.float32), p)):
                if sl.any():
                    ax.contour(sl, levels=[0.5], colors=colour, linewidths=0.8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path, p
