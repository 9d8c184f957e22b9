"""Small MAEs and exact-ratio masks for the model tests."""

from __future__ import annotations

import torch

from medmae.models import MaskedAutoencoder3D


def small_mae(img=(32, 32, 32), patch=8, channels=1, norm_pix=True, seed=0) -> MaskedAutoencoder3D:
    torch.manual_seed(seed)
    return MaskedAutoencoder3D(
        img, patch, channels, embed_dim=48, depth=2, num_heads=4,
        decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2, norm_pix_loss=norm_pix,
    )


def exact_mask(valid: torch.Tensor, ratio: float = 0.75, seed: int = 0) -> torch.Tensor:
    """(B, N) bool valid -> (B, N) bool mask hiding round(ratio * n_valid) valid tokens per sample."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros_like(valid)
    for i in range(valid.shape[0]):
        idx = torch.nonzero(valid[i]).flatten()
        k = round(ratio * len(idx))
        mask[i, idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return mask


def all_valid(batch: int, n: int) -> torch.Tensor:
    return torch.ones(batch, n, dtype=torch.bool)
