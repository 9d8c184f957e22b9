"""Interpolation from the visible voxels: every voxel as the Gaussian-weighted mean of the
visible voxels around it (normalised convolution, separable, zero outside the crop).

Used as the MAE's starting guess for hidden patches (``interp_residual``: the decoder
predicts a correction to it) and as the reference a reconstruction is judged against
(medmae.training.fixed_crops).
"""

from __future__ import annotations

from typing import Sequence

import torch

from medmae.tokens import token_volume


def gaussian_matrix(n: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n, n) matrix of Gaussian weights exp(-(i-j)^2 / 2 sigma^2) cut at 3 sigma: smoothing
    along an axis of length n with zero padding (the weights are not renormalised: the
    normalised convolution divides by the smoothed weights anyway)."""
    ax = torch.arange(n, dtype=dtype, device=device)
    d = ax[:, None] - ax[None, :]
    return torch.where(d.abs() <= 3 * sigma, torch.exp(-0.5 * (d / sigma) ** 2), torch.zeros((), dtype=dtype,
                                                                                                  device=device))


def _smooth(x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """(B, C, X, Y, Z) -> same, Gaussian-smoothed along each axis (zero padding); three small
    matrix products, ~10x faster on CPU than 1D convolutions."""
    gx, gy, gz = (gaussian_matrix(n, s, x.device, x.dtype) for n, s in zip(x.shape[2:], sigmas))
    x = x @ gz  # symmetric matrices: contracting the last axis
    x = (x.transpose(-1, -2) @ gy).transpose(-1, -2)
    return torch.einsum("bcxyz,ix->bciyz", x, gx)


def interpolate_from_visible(x: torch.Tensor, visible: torch.Tensor, patch_size: Sequence[int],
                             sigmas: Sequence[float] | None = None) -> torch.Tensor:
    """(B, C, X, Y, Z) image, (B, N) bool visible tokens -> (B, C, X, Y, Z) interpolation.

    Hidden voxels never enter it (their weight is 0); ``sigmas`` default to half a patch.
    A voxel with no visible voxel within reach gets the sample's visible mean.
    """
    b, c = x.shape[:2]
    grid = [s // p for s, p in zip(x.shape[2:], patch_size)]
    sigmas = [p / 2 for p in patch_size] if sigmas is None else sigmas
    w = token_volume(visible, patch_size, grid).to(x.dtype)
    num, den = _smooth(x * w, sigmas), _smooth(w, sigmas)
    mean = (x * w).sum((2, 3, 4), keepdim=True) / w.sum((2, 3, 4), keepdim=True).clamp(min=1)
    return torch.where(den > 1e-4, num / den.clamp(min=1e-4), mean.expand_as(num))
