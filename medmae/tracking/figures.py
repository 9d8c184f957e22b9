"""Reconstruction montages: input, mask and reconstruction through the crop centre.

For each sample, three rows (axial, coronal, sagittal planes through the centre of the
crop) and three columns: the input; the input with hidden tokens shaded red and
out-of-play tokens (outside the body) grey; the reconstruction, i.e. the input's visible
patches pasted back into the model's prediction of the hidden ones (from
``MaskedAutoencoder3D.reconstruct(pred, x, mask)``). Channel 0 is shown.
Axes follow the cache's RAS voxel order, drawn with the first in-plane axis to the right
and the second upwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medmae.atomic import atomic_write
from medmae.tokens import token_volume

PLANES = ("axial", "coronal", "sagittal")


def token_map(tokens: torch.Tensor, patch_size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """(B, N) per-token values -> (B, X, Y, Z) voxel map (each token's value over its patch)."""
    return token_volume(tokens, patch_size, grid)[:, 0]


def _centre_planes(vol: np.ndarray) -> list[np.ndarray]:
    """(X, Y, Z) -> [axial (X, Y), coronal (X, Z), sagittal (Y, Z)] through the centre."""
    x, y, z = (s // 2 for s in vol.shape)
    return [vol[:, :, z], vol[:, y, :], vol[x, :, :]]


def save_reconstruction_figure(path: str | os.PathLike, image: torch.Tensor, recon: torch.Tensor,
                               mask: torch.Tensor, valid: torch.Tensor | None,
                               patch_size: Sequence[int], titles: Sequence[str] | None = None,
                               max_samples: int = 2, suptitle: str | None = None,
                               reference: torch.Tensor | None = None, reference_title: str = "reference") -> Path:
    """Write the PNG montage atomically; returns ``path``.

    image, recon: (B, C, X, Y, Z); mask, valid: (B, N) bool; titles: one per sample (case ids).
    reference: an optional (B, C, X, Y, Z) volume shown in a fourth column (e.g. what
    interpolation from the visible patches gives), on the same grey scale.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, thread-safe

    b = min(int(max_samples), image.shape[0])
    grid = [s // p for s, p in zip(image.shape[2:], patch_size)]
    valid = torch.ones_like(mask) if valid is None else valid
    hidden = token_map(mask & valid, patch_size, grid).cpu().numpy()
    out_of_play = token_map(~valid, patch_size, grid).cpu().numpy()
    img = image[:b, 0].detach().float().cpu().numpy()
    rec = recon[:b, 0].detach().float().cpu().numpy()
    ref = None if reference is None else reference[:b, 0].detach().float().cpu().numpy()
    cols = 3 if ref is None else 4

    fig = Figure(figsize=(2.5 * cols, 2.5 * 3 * b))
    axes = fig.subplots(3 * b, cols, squeeze=False)
    for i in range(b):
        lo, hi = np.percentile(img[i], [0.5, 99.5])
        hi = hi if hi > lo else lo + 1.0
        planes = zip(_centre_planes(img[i]), _centre_planes(hidden[i]), _centre_planes(out_of_play[i]),
                     _centre_planes(rec[i]), _centre_planes(rec[i] if ref is None else ref[i]))
        for p, (im, hid, oop, rc, rf) in enumerate(planes):
            row = axes[3 * i + p]
            overlay = np.zeros(im.shape + (4,))
            overlay[hid > 0.5] = (1.0, 0.1, 0.1, 0.45)
            overlay[oop > 0.5] = (0.5, 0.5, 0.5, 0.6)
            for ax, data in zip(row, (im, im, rc, rf)):
                ax.imshow(data.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            row[1].imshow(overlay.transpose(1, 0, 2), origin="lower", interpolation="nearest")
            name = titles[i] if titles is not None and i < len(titles) else f"sample {i}"
            row[0].set_ylabel(f"{name}\n{PLANES[p]}", fontsize=8)
            if i == 0 and p == 0:
                for ax, t in zip(row, ("input", "mask (red = hidden)", "reconstruction", reference_title)):
                    ax.set_title(t, fontsize=9)
    top = 1.0
    if suptitle:  # placed in inches from the top: tall montages (many samples) keep it clear of the columns
        fig.suptitle(suptitle, fontsize=10, y=1.0 - 0.08 / fig.get_figheight(), va="top")
        top = 1.0 - 0.4 / fig.get_figheight()  # room for the title above the column titles
    fig.tight_layout(rect=(0, 0, 1, top))
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
