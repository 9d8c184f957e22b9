"""Building a :class:`MaskContext` from a loader batch."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from medmae.masking.base import MaskContext
from medmae.masking.symmetry import mirror_tokens
from medmae.tokens import grid_shape, token_fraction, token_mode

PRIOR_MAPS = ("anatomy", "tissue", "supervoxels")


def build_context(batch: Mapping[str, Any], patch_size: Sequence[int], foreground_only: bool,
                  min_fraction: float, device: torch.device | str, min_valid_tokens: int = 2) -> MaskContext:
    """Loader batch -> per-token context on ``device``.

    batch: "image" (B, C, X, Y, Z) float; "body" (B, 1, X, Y, Z) 0/1 (required when
    ``foreground_only``); optional "anatomy" / "tissue" / "supervoxels" (B, 1, X, Y, Z) int.
    valid = body fraction >= ``min_fraction`` when ``foreground_only``, else all True.
    A sample with fewer than ``min_valid_tokens`` valid tokens (a crop in the air) falls back
    to all tokens valid, so every sample can hide >= 1 token and show >= 1.
    With "midline" (B,) float in the batch (each crop's mid-sagittal plane along axis 0 in
    crop voxels, NaN: none), ``mirror`` holds each token's mirror (:func:`mirror_tokens`).
    """
    if "image" not in batch:
        raise ValueError("batch has no 'image'")
    image = batch["image"].to(device, non_blocking=True)
    if image.ndim != 5:
        raise ValueError(f"batch 'image' must be (B, C, X, Y, Z), got shape {tuple(image.shape)}")
    spatial = tuple(image.shape[2:])
    grid = grid_shape(spatial, patch_size)
    n_tokens = grid[0] * grid[1] * grid[2]
    if n_tokens < 2:
        raise ValueError(f"crop {spatial} with patch {tuple(patch_size)} has {n_tokens} token; need >= 2")
    if min_valid_tokens < 2:
        raise ValueError(f"min_valid_tokens must be >= 2, got {min_valid_tokens}")
    b = image.shape[0]

    if "body" in batch:
        body = token_fraction(_map(batch, "body", b, spatial, device) > 0, patch_size)
    elif foreground_only:
        raise ValueError("foreground-only masking needs the 'body' map in the batch (data.priors)")
    else:
        body = torch.ones(b, n_tokens, device=device)

    if foreground_only:
        valid = body >= min_fraction
        too_few = valid.sum(1, keepdim=True) < min(min_valid_tokens, n_tokens)
        valid = valid | too_few
    else:
        valid = torch.ones(b, n_tokens, dtype=torch.bool, device=device)

    maps = {name: token_mode(_map(batch, name, b, spatial, device), patch_size)
            for name in PRIOR_MAPS if name in batch}
    mirror = None
    if "midline" in batch:
        plane = torch.as_tensor(batch["midline"]).to(device, non_blocking=True)
        if plane.shape != (b,):
            raise ValueError(f"batch 'midline' must be (B,) = ({b},), got shape {tuple(plane.shape)}")
        mirror = mirror_tokens(grid, patch_size[0], plane)
    return MaskContext(grid=grid, image=image, valid=valid, body=body, maps=maps, mirror=mirror)


def _map(batch: Mapping[str, Any], name: str, b: int, spatial: tuple[int, ...], device) -> torch.Tensor:
    """Batch map ``name`` checked to be (B, 1, *spatial) and moved to ``device``."""
    m = batch[name]
    if not isinstance(m, torch.Tensor):
        raise ValueError(f"batch {name!r} must be a tensor, got {type(m).__name__}")
    if tuple(m.shape) != (b, 1, *spatial):
        raise ValueError(f"batch {name!r} has shape {tuple(m.shape)}; expected {(b, 1, *spatial)} like the image")
    return m.to(device, non_blocking=True)
