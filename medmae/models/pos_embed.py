"""3D sin-cos position embeddings and their resizing to another token grid.

The width D is split into three even chunks, one per grid axis (X, Y, Z); each chunk holds
``[sin(pos * w), cos(pos * w)]`` over geometric frequencies w (MAE's 1D recipe per axis).
Unlike MONAI's ``build_sincos_position_embedding`` D need not be divisible by 6 (ViT-L's
1024 works), and grids may be anisotropic ((8, 8, 2) for thick-slice patches). Positions
are integer token indices, so a token's code depends only on its (i, j, k) cell.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def axis_widths(dim: int) -> tuple[int, int, int]:
    """Split width ``dim`` into three even per-axis chunks (the first ones get the remainder)."""
    if dim % 2 or dim < 6:
        raise ValueError(f"sin-cos position embedding needs an even width >= 6, got {dim}")
    base = dim // 6 * 2
    rest = dim - 3 * base  # 0, 2 or 4
    return tuple(base + 2 * (a < rest // 2) for a in range(3))


def sincos_1d(positions: torch.Tensor, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """(M,) positions -> (M, width) as ``[sin(p * w_f), cos(p * w_f)]``, w_f = T^(-f/(width/2))."""
    half = width // 2
    omega = 1.0 / temperature ** (torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_3d(grid: Sequence[int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(gx, gy, gz), D -> (1, gx*gy*gz, D) float32, rows in ``medmae.tokens`` order."""
    if len(grid) != 3 or any(g < 1 for g in grid):
        raise ValueError(f"grid must be three positive sizes, got {tuple(grid)}")
    coords = torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij")
    parts = [sincos_1d(c.reshape(-1), w, temperature) for c, w in zip(coords, axis_widths(dim))]
    return torch.cat(parts, dim=1).float()[None]


def interpolate_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> torch.Tensor:
    """(1, N_old, D) -> (1, N_new, D) by trilinear resampling of the embedding field.

    Cell-centred (``align_corners=False``, as MAE's ``interpolate_pos_embed``): the new
    grid's cells cover the same field of view as the old grid's. Returns the input
    unchanged when the grids are equal. Works for learned embeddings too.
    """
    old_grid, new_grid = tuple(int(g) for g in old_grid), tuple(int(g) for g in new_grid)
    n, d = pos_embed.shape[-2:]
    if n != old_grid[0] * old_grid[1] * old_grid[2]:
        raise ValueError(f"position embedding has {n} rows but grid {old_grid} has {old_grid[0] * old_grid[1] * old_grid[2]}")
    if old_grid == new_grid:
        return pos_embed
    field = pos_embed.reshape(1, *old_grid, d).permute(0, 4, 1, 2, 3).float()  # 1 D gx gy gz
    field = F.interpolate(field, size=new_grid, mode="trilinear", align_corners=False)
    return field.permute(0, 2, 3, 4, 1).reshape(1, -1, d).to(pos_embed.dtype)
