"""Left-right symmetry on the token grid (brains): mirror tokens across the mid-sagittal plane.

Crops are RAS, so token grid axis 0 runs left -> right. The loader gives each crop the plane
of its case along crop axis 0 in crop voxels (batch "midline", NaN: none; see
:mod:`medmae.data.crop_midline`), and :func:`mirror_tokens` pairs every token with the token
whose centre is its reflection about that plane. Tokens whose reflection falls outside the
crop have no mirror (-1). Without a plane in the batch, :func:`mirror_index` mirrors about
the crop's own centre, (i, j, k) -> (gx - 1 - i, j, k).
"""

from __future__ import annotations

from typing import Literal

import torch

from medmae.masking.select import hidden_counts, topk_by_count, topk_mask, with_ties_broken

SymmetricMode = Literal["none", "mirror", "both"]


def mirror_index(grid: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) long: token index of each token's mirror across the crop's centre (grid axis 0)."""
    gx, gy, gz = grid
    cells = torch.arange(gx * gy * gz, device=device).view(gx, gy, gz)
    return cells.flip(0).reshape(-1)


def mirror_tokens(grid: tuple[int, int, int], patch_x: int, plane: torch.Tensor) -> torch.Tensor:
    """Per-sample mirror of every token about a plane along axis 0: (B, N) long, -1 = none.

    plane: (B,) float, the plane's position along crop axis 0 in crop voxels (NaN: no plane,
    every token gets -1). Token slab i has its centre at voxel ``i * p + (p - 1) / 2``; its
    mirror is slab ``R - i`` with ``R = round(2 * (plane - (p - 1) / 2) / p)`` (the reflection
    of the centre, rounded to the nearest slab), when ``0 <= R - i < gx``. Pairs are mutual.
    The crop's centre, ``plane = (gx * p - 1) / 2``, gives :func:`mirror_index`.
    """
    gx, gy, gz = grid
    p = float(patch_x)
    plane = plane.to(torch.float64).reshape(-1)
    r = torch.round(2.0 * (plane - (p - 1.0) / 2.0) / p)  # (B,)
    i = torch.arange(gx, device=plane.device, dtype=torch.float64)
    j = r[:, None] - i[None, :]  # (B, gx) mirror slab of each slab
    ok = torch.isfinite(j) & (j >= 0) & (j <= gx - 1)
    slab = torch.where(ok, j, torch.full_like(j, -1)).long()  # (B, gx)
    cells = torch.arange(gy * gz, device=plane.device)
    idx = slab[:, :, None] * (gy * gz) + cells[None, None, :]  # (B, gx, gy*gz)
    return torch.where(slab[:, :, None] >= 0, idx, torch.full_like(idx, -1)).reshape(plane.shape[0], -1)


def symmetric_mask(priority: torch.Tensor, coin: torch.Tensor, valid: torch.Tensor,
                   grid: tuple[int, int, int], mirror: torch.Tensor, ratio: float,
                   mode: SymmetricMode, generator: torch.Generator) -> torch.Tensor:
    """Hide whole units in priority order, with left-right semantics -> mask (B, N) bool.

    priority (B, N) long (higher = hidden first, equal on a unit), coin (B, N) bool (one
    coin per unit), valid (B, N) bool, mirror (B, N) long (-1 = no mirror).

    A token is *paired* when it has a mirror and both are valid. The budget
    round(ratio * n_valid) is split: unpaired tokens (their mirror lies outside the crop,
    outside the valid tokens, or the case has no plane) get round(ratio * n_unpaired) of
    it and are hidden in unit order with no symmetry rule; paired tokens get the rest:

    "none":   unit order, no split (plain anatomy masking).
    "both":   a unit is hidden together with its mirror image: a paired token takes the
              higher priority of itself and its mirror, so the hidden paired set is
              left-right symmetric except where the budget cuts the last unit.
    "mirror": hide a unit on one side while its mirror stays visible. A paired token is in
              the first tier when its unit comes before its mirror's unit in the order
              (for a unit that is its own mirror, when it lies on the unit's randomly
              chosen side, ``coin`` True = left). First-tier tokens are hidden first, in
              unit order; the rest (the mirrors, and the slab on the plane, its own mirror)
              only once the first tier is used up. So while ratio <= the first tier's share
              of the paired tokens (about 1/2), no token is hidden together with its mirror.
    """
    if mode == "none":
        return topk_mask(with_ties_broken(priority, generator), valid, ratio)
    if mode not in ("mirror", "both"):
        raise ValueError(f"symmetric mode must be none, mirror or both, got {mode!r}")
    has = mirror >= 0
    m = mirror.clamp(min=0)
    paired = valid & has & valid.gather(1, m)
    p_mirror = priority.gather(1, m)
    if mode == "both":
        prio = torch.where(paired, torch.maximum(priority, p_mirror), priority)
    else:
        per_slab = grid[1] * grid[2]
        slab = torch.arange(priority.shape[1], device=priority.device) // per_slab  # (N,)
        twice_plane = slab + m // per_slab  # (B, N): i + mirror slab = 2 x the plane, in slabs
        left, right = 2 * slab < twice_plane, 2 * slab > twice_plane
        own_side = torch.where(coin, left, right)
        first = paired & (left | right) & ((priority > p_mirror) | ((priority == p_mirror) & own_side))
        top = priority.max() + 1 if priority.numel() else 1
        prio = priority + first.long() * top
    scores = with_ties_broken(prio, generator)
    k = hidden_counts(valid, ratio)
    alone = valid & ~paired
    n_alone, n_paired = alone.sum(1), paired.sum(1)
    k_alone = torch.round(n_alone.double() * ratio).long()
    k_alone = torch.maximum(torch.minimum(k_alone, torch.minimum(k, n_alone)), k - n_paired)
    return topk_by_count(scores, alone, k_alone) | topk_by_count(scores, paired, k - k_alone)
