"""Token grid conventions shared by the model and the masking strategies.

A crop of shape (X, Y, Z) with patch (px, py, pz) has a token grid (gx, gy, gz) =
(X // px, Y // py, Z // pz) and N = gx * gy * gz tokens, flattened in C order:
token n = (i * gy + j) * gz + k for grid cell (i, j, k).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def grid_shape(img_size: Sequence[int], patch_size: Sequence[int]) -> tuple[int, int, int]:
    """(X, Y, Z), (px, py, pz) -> (gx, gy, gz); raises if the crop is not divisible."""
    if len(img_size) != 3 or len(patch_size) != 3:
        raise ValueError(f"img_size {tuple(img_size)} and patch_size {tuple(patch_size)} must be 3D")
    for s, p in zip(img_size, patch_size):
        if p <= 0 or s % p:
            raise ValueError(f"crop size {tuple(img_size)} is not divisible by patch size {tuple(patch_size)}")
    return tuple(int(s // p) for s, p in zip(img_size, patch_size))


def patchify(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """(B, C, X, Y, Z) -> (B, N, px*py*pz*C), token order as in the module docstring."""
    b, c, X, Y, Z = x.shape
    px, py, pz = patch_size
    gx, gy, gz = grid_shape((X, Y, Z), patch_size)
    x = x.reshape(b, c, gx, px, gy, py, gz, pz)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b gx gy gz px py pz c
    return x.reshape(b, gx * gy * gz, px * py * pz * c)


def unpatchify(tokens: torch.Tensor, patch_size: Sequence[int], grid: Sequence[int], channels: int) -> torch.Tensor:
    """(B, N, px*py*pz*C) -> (B, C, X, Y, Z); inverse of :func:`patchify`."""
    b = tokens.shape[0]
    px, py, pz = patch_size
    gx, gy, gz = grid
    x = tokens.reshape(b, gx, gy, gz, px, py, pz, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # b c gx px gy py gz pz
    return x.reshape(b, channels, gx * px, gy * py, gz * pz)


def token_volume(values: torch.Tensor, patch_size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """(B, N) per-token values -> (B, 1, X, Y, Z) float map, each token's value over its patch."""
    per_voxel = values.float()[..., None].expand(*values.shape, math.prod(patch_size))
    return unpatchify(per_voxel, patch_size, grid, 1)


def token_fraction(binary: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """(B, 1, X, Y, Z) 0/1 map -> (B, N) float fraction of each token's voxels that are 1."""
    return patchify(binary.float(), patch_size).mean(-1)


def token_mode(labels: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """(B, 1, X, Y, Z) integer map -> (B, N) long, the most frequent label in each token."""
    t = patchify(labels.long(), patch_size)  # B N P
    return torch.mode(t, dim=-1).values


def patch_differences(tokens: torch.Tensor, patch_size: Sequence[int], channels: int = 1) -> torch.Tensor:
    """(B, N, px*py*pz*C) -> (B, N, M): voxel differences along each axis inside each patch
    (never across a patch seam), concatenated; M = C * sum over axes of (p_a - 1) * (P / p_a)."""
    b, n, _ = tokens.shape
    t = tokens.reshape(b, n, *patch_size, channels)
    return torch.cat([torch.diff(t, dim=a).flatten(2) for a in (2, 3, 4)], -1)
