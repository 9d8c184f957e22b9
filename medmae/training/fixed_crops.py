"""Hidden-token correlation on fixed crops of whole cached scans: a number for "does the model
reconstruct *these* scans", independent of the training sampler.

For each case: seven crops of the training size, one centred on the body's centroid and six
shifted by a quarter crop along each axis (clipped to the volume, padded with the case's
lowest value); per crop, ``draws`` seeded random masks hide ``ratio`` of the valid tokens
(body fraction >= ``min_fraction``). The score is the mean :func:`hidden_correlation` over
crops and draws. Same seed, same crops, same masks: runs compare like with like.
"""

from __future__ import annotations

import numpy as np
import torch

from medmae.models.mae import MaskedAutoencoder3D
from medmae.tokens import patchify
from medmae.training.correlation import hidden_correlation


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
def fixed_crop_correlation(model: MaskedAutoencoder3D, image: np.ndarray, body: np.ndarray, ratio: float,
                           min_fraction: float = 0.1, draws: int = 3, seed: int = 0) -> float:
    """Mean hidden-token r of ``model`` on :func:`case_crops` of one case (see the module doc)."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    values = []
    for x, b in case_crops(image, body, model.img_size):
        frac = patchify(torch.from_numpy(b)[None, None].float(), model.patch_size).mean(-1)  # 1 N
        valid = frac >= min_fraction
        n_hidden = int(round(ratio * int(valid.sum())))
        if n_hidden < 1 or n_hidden >= int(valid.sum()):
            continue
        for _ in range(draws):
            order = torch.where(valid, torch.rand(valid.shape, generator=g), torch.full(valid.shape, 2.0))
            mask = torch.zeros_like(valid)
            mask[0, order[0].argsort()[:n_hidden]] = True
            out = model(torch.from_numpy(x)[None], mask, valid)
            values.append(float(hidden_correlation(out.pred, out.target, mask, valid)))
    return float(np.mean(values)) if values else float("nan")
