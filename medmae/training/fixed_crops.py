"""Hidden-token scores on fixed crops of whole cached scans: numbers (and a figure) for "does
the model reconstruct *these* scans", independent of the training sampler.

For each case: seven crops of the training size, one centred on the body's centroid and six
shifted by a quarter crop along each axis (clipped to the volume, padded with the case's
lowest value); per crop, ``draws`` seeded random masks hide ``ratio`` of the valid tokens
(body fraction >= ``min_fraction``). Two scores, means over crops and draws:

* ``r`` -- :func:`hidden_correlation`, the reconstruction against the truth on hidden voxels;
* ``edge_r`` -- :func:`hidden_gradient_correlation`, the voxel differences inside hidden
  patches against the truth's: 0 when hidden patches are drawn flat, whatever their level.

Beside the model, the same two scores for the **interpolation reference**: each hidden voxel
predicted from the visible voxels alone by normalised Gaussian smoothing, sigma half a patch
(:func:`medmae.models.interpolation.interpolate_from_visible`). A model that only
interpolates scores about the same; drawing boundaries that interpolation blurs shows as a
higher edge r.

Same seed, same crops, same masks: runs compare like with like. The centre crop's first draw
is kept for the figure (:func:`save_scan_figure`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from medmae.models.interpolation import interpolate_from_visible
from medmae.models.mae import MaskedAutoencoder3D
from medmae.tokens import token_fraction
from medmae.tracking.figures import save_reconstruction_figure, token_map
from medmae.training.correlation import hidden_correlation, hidden_gradient_correlation


@dataclass
class ScanScores:
    """Fixed-crop scores of one scan, and its centre crop's first draw for figures."""

    case_id: str
    r: float
    edge_r: float
    interp_r: float
    interp_edge_r: float
    example: tuple[torch.Tensor, ...] | None  # x, recon, mask, valid, interpolation (visible pasted)


def case_crops(image: np.ndarray, body: np.ndarray, crop: tuple[int, int, int]
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(C, X, Y, Z) image and (X, Y, Z) body -> seven (image (C, *crop), body (*crop)) crops."""
    centre = np.round(np.argwhere(body).mean(0)).astype(int)
    shifts = [np.zeros(3, int)] + [s * np.eye(3, dtype=int)[a] * (crop[a] // 4) for a in range(3) for s in (1, -1)]
    out = []
    for shift in shifts:
        start = [int(np.clip(centre[a] + shift[a] - crop[a] // 2, 0, max(0, body.shape[a] - crop[a]))) for a in range(3)]
        window = tuple(slice(s, s + n) for s, n in zip(start, crop))
        part, part_body = image[(slice(None), *window)], body[window]
        x = np.full((image.shape[0], *crop), float(image.min()), np.float32)
        b = np.zeros(crop, bool)
        inner = tuple(slice(0, n) for n in part_body.shape)
        x[(slice(None), *inner)], b[inner] = part, part_body
        out.append((x, b))
    return out


@torch.no_grad()
def score_scan(model: MaskedAutoencoder3D, case_id: str, image: np.ndarray, body: np.ndarray, ratio: float,
               min_fraction: float = 0.1, draws: int = 3, seed: int = 0) -> ScanScores:
    """Mean hidden-token r and edge r of ``model`` on :func:`case_crops` of one case."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    rs, edges, irs, iedges, example = [], [], [], [], None
    for x, b in case_crops(image, body, model.img_size):
        valid = token_fraction(torch.from_numpy(b)[None, None], model.patch_size) >= min_fraction  # 1 N
        n_hidden = int(round(ratio * int(valid.sum())))
        if n_hidden < 1 or n_hidden >= int(valid.sum()):
            continue
        xt = torch.from_numpy(x)[None]
        for _ in range(draws):
            order = torch.where(valid, torch.rand(valid.shape, generator=g), torch.full(valid.shape, 2.0))
            mask = torch.zeros_like(valid)
            mask[0, order[0].argsort()[:n_hidden]] = True
            out = model(xt, mask, valid)
            rs.append(float(hidden_correlation(out.pred, out.target, mask, valid)))
            edges.append(float(hidden_gradient_correlation(out.pred, out.target, mask, valid, model.patch_size,
                                                           model.in_channels)))
            smooth = interpolate_from_visible(xt, valid & ~mask, model.patch_size)
            interp = model.patch_target(smooth, valid)
            irs.append(float(hidden_correlation(interp, out.target, mask, valid)))
            iedges.append(float(hidden_gradient_correlation(interp, out.target, mask, valid, model.patch_size,
                                                            model.in_channels)))
            if example is None:
                pasted = torch.where(token_map(mask, model.patch_size, model.grid)[0] > 0.5, smooth, xt)
                example = (xt, model.reconstruct(out.pred, xt, mask, valid), mask, valid, pasted)
    mean = (lambda v: float(np.mean(v)) if v else float("nan"))
    return ScanScores(case_id, mean(rs), mean(edges), mean(irs), mean(iedges), example)


def score_cases(model: MaskedAutoencoder3D, case_dirs: Iterable[str | os.PathLike], ratio: float,
                min_fraction: float = 0.1) -> list[ScanScores]:
    """:func:`score_scan` on each cached case folder (its image and body mask)."""
    from medmae.preprocess.cache import open_case

    out = []
    for path in case_dirs:
        c = open_case(path)
        out.append(score_scan(model, c.case_id, np.asarray(c.image, np.float32), np.asarray(c.map("body")) > 0,
                              ratio, min_fraction))
    return out


def save_scan_figure(path: str | os.PathLike, scores: Iterable[ScanScores], patch_size: tuple[int, int, int],
                     suptitle: str | None = None) -> Path:
    """One montage block per scan (its centre crop: input, hidden tokens, reconstruction and
    interpolation reference, both with the visible patches pasted), titled with the case id
    and the model's r / edge r (the reference's in brackets)."""
    shown = [s for s in scores if s.example is not None]
    if not shown:
        raise ValueError("no scan has a scored crop to show")
    x, recon, mask, valid, interp = (torch.cat([s.example[i] for s in shown]) for i in range(5))
    titles = [f"{s.case_id}\nr {s.r:.2f} ({s.interp_r:.2f})\nedge r {s.edge_r:.2f} ({s.interp_edge_r:.2f})"
              for s in shown]
    return save_reconstruction_figure(path, x, recon, mask, valid, patch_size, titles=titles,
                                      max_samples=len(shown), suptitle=suptitle, reference=interp,
                                      reference_title="interpolation")
