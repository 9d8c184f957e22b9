"""Hemispheres on the token grid, for scoring one hemisphere against the other (anomaly head).

Given a case's mid-sagittal plane (``meta["midline"]["index"]`` of a cached case, or
:func:`medmae.preprocess.midline.estimate_midline` of a preprocessed image) and where a
window of the scan starts along axis 0, these say which tokens lie left or right of the
plane and which token mirrors which. RAS: voxel index along axis 0 grows to the right.
"""

from __future__ import annotations

from typing import Sequence

import torch

from medmae.masking.symmetry import mirror_tokens


def _patch_x(patch: int | Sequence[int]) -> int:
    p = int(patch) if isinstance(patch, int) else int(patch[0])
    if p < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    return p


def hemisphere_token_masks(grid: tuple[int, int, int], patch: int | Sequence[int], midline_index: float,
                           offset: int = 0) -> torch.Tensor:
    """(2, N) bool: row 0 the tokens wholly left of the plane, row 1 those wholly right.

    grid: (gx, gy, gz) token grid of a window whose voxel 0 along axis 0 is scan voxel
    ``offset``; patch: the patch size (an int or (px, py, pz)); midline_index: the plane
    along axis 0 in scan voxels. Token slab i covers scan voxels ``offset + i*p ..
    offset + (i+1)*p - 1`` (voxel x spans [x - 0.5, x + 0.5]); a slab that straddles the
    plane is in neither row. Hiding row 0 shows only the right hemisphere, and vice versa.
    """
    gx, gy, gz = grid
    p = _patch_x(patch)
    i = torch.arange(gx, dtype=torch.float64)
    left = offset + (i + 1) * p - 0.5 <= midline_index
    right = offset + i * p - 0.5 >= midline_index
    rows = torch.stack([left, right]).repeat_interleave(gy * gz, dim=1)  # (2, N) in token order
    return rows


def hemisphere_mirror(grid: tuple[int, int, int], patch: int | Sequence[int], midline_index: float,
                      offset: int = 0) -> torch.Tensor:
    """(N,) long: each token's mirror across the plane (-1 when it falls outside the window),
    the same pairing symmetric masking uses (:func:`medmae.masking.symmetry.mirror_tokens`)."""
    plane = torch.tensor([float(midline_index) - float(offset)], dtype=torch.float64)
    return mirror_tokens(grid, _patch_x(patch), plane)[0]
