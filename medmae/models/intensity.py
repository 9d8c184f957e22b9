"""Intensity statistics of patchified tokens: per token (norm-pix) and per crop (norm-crop,
input normalisation)."""

from __future__ import annotations

import torch


def per_channel(tokens: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, N, P*C) -> (B, N, P, C) (patchify's last axis is voxel-major, channel-minor)."""
    return tokens.reshape(*tokens.shape[:2], -1, channels)


def patch_stats(tokens: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, P*C) -> mean, std each (B, N, 1, C) per token and channel (unbiased var + 1e-6,
    as MAE). Two passes (mean, then centred squares): exact like ``var`` and ~15x faster on CPU."""
    t = per_channel(tokens, channels)
    mean = t.mean(2, keepdim=True)
    var = (t - mean).square().sum(2, keepdim=True) / max(t.shape[2] - 1, 1)
    return mean, (var + 1e-6).sqrt()


def crop_stats(tokens: torch.Tensor, channels: int, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, P*C) -> mean, std each (B, 1, 1, C) per sample and channel over the voxels of
    its valid tokens (all tokens when ``valid`` is None); var + 1e-6 as ``patch_stats``."""
    t = per_channel(tokens, channels)  # B N P C
    w = torch.ones(t.shape[:2], dtype=t.dtype, device=t.device) if valid is None else valid.to(t.dtype)
    w = w[:, :, None, None]
    n = (w.sum((1, 2), keepdim=True) * t.shape[2]).clamp(min=1)
    mean = (t * w).sum((1, 2), keepdim=True) / n
    var = ((t - mean).square() * w).sum((1, 2), keepdim=True) / n
    return mean, (var + 1e-6).sqrt()
