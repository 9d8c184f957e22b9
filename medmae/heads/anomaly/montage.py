"""Per-case montage: axial, coronal and sagittal views through each listed region, radiological convention.

Drawn from the case's preview.npz (the preprocessed grid: RAS axes, index x growing toward
the patient's right, isotropic voxels). Radiological convention: in axial and coronal views
the patient's right is on the viewer's LEFT; sagittal views have anterior on the left. Every
panel carries its orientation letters (R/L, A/P, S/I) and a scale bar in mm. The scan is
grey, the anomaly map is coloured (``hot``) where it exceeds the display threshold, with a
colour bar in the map's unit and the calibrated threshold marked on it; the binary map is a
solid cyan contour, the reference lesion a dashed lime contour, each listed region a
numbered crosshair. Text is drawn with ``parse_math=False``: any case id shows as written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medmae.atomic import atomic_write

PLANES = ("axial", "coronal", "sagittal")
LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
"""Per plane: the patient side shown at the viewer's left, right, top and bottom."""
BINARY_COLOUR, LESION_COLOUR, CROSS_COLOUR = "cyan", "lime", "white"
DPI = 100
PANEL_IN = 3.6  # inches per view: 360 px at DPI


def hotspot(map_: np.ndarray, body: np.ndarray) -> tuple[int, int, int]:
    """Voxel of the highest smoothed map value inside the body (the centre if the map is flat)."""
    smooth = ndimage.gaussian_filter(map_.astype(np.float32), 1.5) * body
    if not smooth.any():
        return tuple(int(s // 2) for s in map_.shape)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(smooth)), map_.shape))


def view(a: np.ndarray, p: tuple[int, int, int], plane: str) -> np.ndarray:
    """(X, Y, Z) RAS-indexed array -> the 2D slice through ``p`` as shown (row 0 at the top).

    axial: rows A->P, columns R->L; coronal: rows S->I, columns R->L; sagittal: rows S->I, columns A->P.
    """
    if plane == "axial":
        return a[::-1, ::-1, p[2]].T
    if plane == "coronal":
        return a[::-1, p[1], ::-1].T
    return a[p[0], ::-1, ::-1].T


def view_point(p: tuple[int, int, int], shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """Voxel ``p`` -> (column, row) in :func:`view`'s slice of ``plane``."""
    x, y, z = (s - 1 - v for v, s in zip(p, shape[:3]))
    return {"axial": (x, y), "coronal": (x, z), "sagittal": (y, z)}[plane]


def view_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(column, row) voxel size in mm of a plane's view."""
    sx, sy, sz = spacing
    return {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[plane]


def _letters(ax, plane: str) -> None:
    import matplotlib.patheffects as pe

    left, right, top, bottom = LETTERS[plane]
    style = dict(transform=ax.transAxes, color="white", fontsize=13, fontweight="bold", parse_math=False,
                 path_effects=[pe.withStroke(linewidth=2.5, foreground="black")])
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _scale_bar(ax, width_mm: float, height_mm: float) -> None:
    import matplotlib.patheffects as pe

    length = next((v for v in (100, 50, 20, 10, 5) if v <= width_mm / 3), 5)
    x1, y = width_mm * 0.95, height_mm * 0.93
    ax.plot([x1 - length, x1], [y, y], color="white", linewidth=3, solid_capstyle="butt",
            path_effects=[pe.withStroke(linewidth=5, foreground="black")])
    ax.text(x1 - length / 2, y - height_mm * 0.02, f"{length} mm", color="white", fontsize=9, ha="center",
            va="bottom", parse_math=False, path_effects=[pe.withStroke(linewidth=2, foreground="black")])


def _crosshair(ax, x: float, y: float, size: float, label: str) -> None:
    gap = size * 0.35
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ax.plot([x + dx * gap, x + dx * size], [y + dy * gap, y + dy * size], color=CROSS_COLOUR, linewidth=1.4)
    ax.text(x + size * 0.8, y - size * 0.8, label, color=CROSS_COLOUR, fontsize=10, fontweight="bold",
            parse_math=False)


def _panel(ax, preview: dict, p: tuple[int, int, int], plane: str, style: dict, label: str) -> tuple:
    """Draw one view; returns the image extent in mm (width, height) and the crosshair's centre (mm)."""
    spacing = tuple(float(s) for s in preview.get("spacing", (1.0, 1.0, 1.0)))
    sc, sr = view_spacing(spacing, plane)
    img = view(preview["image"], p, plane)
    h, w = img.shape
    extent = (0, w * sc, h * sr, 0)
    ax.imshow(img, cmap="gray", vmin=style["lo"], vmax=style["hi"], interpolation="nearest", extent=extent)
    ax.imshow(view(style["overlay"], p, plane), cmap="hot", alpha=0.7, interpolation="nearest", extent=extent,
              norm=style["norm"])
    for key, colour, line in (("binary", BINARY_COLOUR, "solid"), ("label", LESION_COLOUR, "dashed")):
        mask = preview.get(key)
        if mask is not None and mask.any():
            sl = view(mask.astype(np.float32), p, plane)
            if sl.any() and sl.min() != sl.max():
                xs, ys = (np.arange(w) + 0.5) * sc, (np.arange(h) + 0.5) * sr
                ax.contour(xs, ys, sl, levels=[0.5], colors=colour, linewidths=1.6, linestyles=line)
    col, row = view_point(p, preview["image"].shape, plane)
    cross = ((col + 0.5) * sc, (row + 0.5) * sr)
    _crosshair(ax, *cross, max(w * sc, h * sr) * 0.06, label)
    _letters(ax, plane)
    _scale_bar(ax, w * sc, h * sr)
    ax.set_xlim(0, w * sc)
    ax.set_ylim(h * sr, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{plane} (slice {p[{'axial': 2, 'coronal': 1, 'sagittal': 0}[plane]]})", fontsize=10,
                 parse_math=False)
    return (w * sc, h * sr), cross


def _style(preview: dict, threshold: float | None) -> dict:
    from matplotlib.colors import Normalize

    image, body = preview["image"].astype(np.float32), preview["body"] > 0
    amap = preview["map_model"].astype(np.float32)
    shown = threshold if threshold is not None else float(np.percentile(amap[body], 99)) if body.any() else 0.0
    top = float(amap[body].max()) if body.any() else float(amap.max())
    lo, hi = np.percentile(image[body], [1, 99]) if body.any() else (image.min(), image.max())
    return {"overlay": np.ma.masked_where(amap <= shown, amap), "shown": shown, "lo": lo, "hi": hi,
            "norm": Normalize(vmin=shown, vmax=max(top, shown + 1e-6))}


def _colour_bar(fig, cax, style: dict, unit: str, threshold: float | None, threshold_label: str) -> None:
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=style["norm"], cmap="hot"), cax=cax)
    bar.ax.ticklabel_format(useOffset=False)
    label = unit
    if threshold is not None:
        bar.ax.axhline(threshold, color=BINARY_COLOUR, linewidth=4)
        label += f"\ncyan line: {threshold_label} {threshold:.3g}"
    bar.set_label(label, fontsize=9, parse_math=False)


def _layout(fig, axes: list, extents: list) -> list[dict]:
    """Pixel box (left, top, right, bottom; PNG rows from the top) of each panel's image and its
    crosshair's centre (x, y) (after savefig)."""
    height = fig.get_size_inches()[1] * fig.dpi
    boxes = []
    for (ax, plane, row), ((w, h), cross) in zip(axes, extents):
        (x0, y0), (x1, y1), (cx, cy) = ax.transData.transform([(0, 0), (w, h), cross])
        boxes.append({"plane": plane, "row": row, "box": (float(x0), float(height - y0), float(x1), float(height - y1)),
                      "cross": (float(cx), float(height - cy))})
    return boxes


def save_montage(preview: dict, path: Path, threshold: float | None, title: str,
                 points: list[tuple[int, int, int]] | None = None, unit: str = "anomaly map",
                 threshold_label: str = "calibrated threshold") -> tuple[Path, tuple[int, int, int], list[dict]]:
    """Write the PNG: one row of 3 views per point (default: the hotspot).

    Returns (path, first point, panel layout: plane, row and the image's pixel box per panel).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body = preview["body"] > 0
    points = list(points or [hotspot(preview["map_model"].astype(np.float32), body)])
    style = _style(preview, threshold)
    height = len(points) * (PANEL_IN + 0.3) + 0.8
    fig = plt.figure(figsize=(3 * PANEL_IN + 1.2, height), dpi=DPI)
    # the title's band (0.4 in) above the first row's panel titles (0.35 in): they never overlap
    grid = fig.add_gridspec(len(points), 4, width_ratios=[1, 1, 1, 0.05], wspace=0.04, hspace=0.12,
                            left=0.01, right=0.9, top=1 - 0.75 / height, bottom=0.01)
    axes, extents = [], []
    for r, p in enumerate(points):
        for c, plane in enumerate(PLANES):
            ax = fig.add_subplot(grid[r, c])
            extents.append(_panel(ax, preview, p, plane, style, str(r + 1)))
            axes.append((ax, plane, r))
    _colour_bar(fig, fig.add_subplot(grid[:, 3]), style, unit, threshold, threshold_label)
    fig.suptitle(title, fontsize=11, parse_math=False, y=1 - 0.08 / height, va="top")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    layout = _layout(fig, axes, extents)
    plt.close(fig)
    return path, points[0], layout
