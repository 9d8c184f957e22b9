"""Left-right symmetry on the token grid (brains): mirror across the crop's sagittal midplane.

Crops are RAS, so token grid axis 0 runs left -> right and the mirror of cell (i, j, k)
is (gx - 1 - i, j, k). When gx is odd, the middle slab is its own mirror.
"""

from __future__ import annotations

from typing import Literal

import torch

SymmetricMode = Literal["none", "mirror", "both"]


def mirror_index(grid: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) long: token index of each token's mirror across grid axis 0."""
    gx, gy, gz = grid
    cells = torch.arange(gx * gy * gz, device=device).view(gx, gy, gz)
    return cells.flip(0).reshape(-1)


def symmetric_priority(priority: torch.Tensor, coin: torch.Tensor, valid: torch.Tensor,
                       grid: tuple[int, int, int], mode: SymmetricMode) -> torch.Tensor:
    """Re-rank unit priorities (B, N) long for symmetric masking -> (B, N) long.

    "none":   unchanged.
    "both":   a unit is hidden together with its mirror image: a token takes the higher
              priority of itself and its mirror, so the hidden set is left-right symmetric
              (except where the budget cuts the last unit, and where validity differs).
    "mirror": hide a unit on one side while its mirror stays visible. A token is in the
              first tier when its unit comes before its mirror's unit in the order (for
              a unit that is its own mirror, e.g. the brainstem, when it lies on the unit's
              randomly chosen side, ``coin`` True = left), or when its mirror is not valid.
              First-tier tokens are hidden first, in unit order; the rest (the mirrors,
              and the midplane slab when gx is odd) only once the first tier is used up.
              So while ratio <= the first tier's share (about 1/2), no token is hidden
              together with its mirror: the model sees the other side of every hidden unit.
    """
    if mode == "none":
        return priority
    mirror = mirror_index(grid, priority.device)
    p_mirror = priority[:, mirror]
    if mode == "both":
        return torch.maximum(priority, p_mirror)
    if mode != "mirror":
        raise ValueError(f"symmetric mode must be none, mirror or both, got {mode!r}")
    gx = grid[0]
    i = torch.arange(gx, device=priority.device).repeat_interleave(grid[1] * grid[2])
    left, right = 2 * i < gx - 1, 2 * i > gx - 1  # (N,) each; neither = midplane slab
    own_side = torch.where(coin, left, right)
    first = (priority > p_mirror) | ((priority == p_mirror) & own_side)
    first = (first | ~valid[:, mirror]) & (left | right)
    top = priority.max() + 1 if priority.numel() else 1
    return priority + first.long() * top
