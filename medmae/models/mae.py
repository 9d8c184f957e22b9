"""3D masked autoencoder (He et al. 2021, "Masked Autoencoders Are Scalable Vision
Learners"), on token masks chosen outside the model.

``model(x, mask, valid)``: x (B, C, X, Y, Z); mask (B, N) bool, True = hidden (chosen by a
``medmae.masking`` strategy; the model never draws masks); valid (B, N) bool or None
(None = all valid). The encoder sees only ``valid & ~mask`` tokens; the decoder attends
over and predicts the valid tokens (all tokens when valid is None); the loss averages the
per-token MSE over ``mask & valid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Sequence

import torch
from torch import nn

from medmae.models.decoder import MAEDecoder
from medmae.models.encoder import ViTEncoder3D
from medmae.models.intensity import crop_stats, patch_stats, per_channel  # noqa: F401 (re-exported)
from medmae.models.interpolation import interpolate_from_visible
from medmae.models.refiner import VoxelRefiner
from medmae.models.token_select import Selection, select_tokens
from medmae.tokens import patchify, token_volume, unpatchify


@dataclass
class MAEOutput:
    """loss: scalar, mean of ``token_loss`` over mask & valid.
    pred, target: (B, N, P*C) float32 (target normalised per patch with norm_pix_loss).
    token_loss: (B, N) per-token MSE, every valid token (0 where not valid: not decoded)."""

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    token_loss: torch.Tensor


@dataclass
class _Plan:
    visible: Selection
    decoded: Selection | None


class MaskedAutoencoder3D(nn.Module):
    """ViT encoder on visible tokens + light decoder over all (valid) tokens.

    Args:
        img_size: crop size (X, Y, Z); patch_size: (px, py, pz); in_channels: C.
        embed_dim, depth, num_heads: encoder; decoder_*: decoder; mlp_ratio, qkv_bias: both.
        norm_pix_loss: regress voxels normalised per token and channel (MAE).
        norm_crop_loss: (without norm_pix_loss) regress voxels normalised per crop and channel
            by the mean / std of its visible tokens' voxels (never a hidden one): patch
            intensity levels stay in the target, and crops of different scales (CT in [0, 1],
            z-scored MR) weigh the same in the loss.
        input_norm: the encoder normalises its input per crop and channel over the visible
            tokens' voxels (see :class:`ViTEncoder3D`).
        interp_residual: the prediction is the interpolation of the hidden voxels from the
            visible ones (:func:`interpolate_from_visible`) plus the decoder's output, which
            thus learns what interpolation misses (edges, shapes). Not with norm_pix_loss.
        refine_width: > 0 adds a :class:`VoxelRefiner` of that width after the decoder: a
            voxel-level correction from the prediction and the visible voxels, which continues
            boundaries into hidden patches. Not with norm_pix_loss.
    """

    def __init__(
        self,
        img_size: int | Sequence[int],
        patch_size: int | Sequence[int] = 16,
        in_channels: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 384,
        decoder_depth: int = 4,
        decoder_num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_pix_loss: bool = True,
        norm_crop_loss: bool = False,
        input_norm: bool = False,
        interp_residual: bool = False,
        refine_width: int = 0,
    ):
        super().__init__()
        self.encoder = ViTEncoder3D(img_size, patch_size, in_channels, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                                    input_norm)
        self.img_size, self.patch_size, self.grid = self.encoder.img_size, self.encoder.patch_size, self.encoder.grid
        self.num_tokens, self.in_channels = self.encoder.num_tokens, in_channels
        self.patch_dim = prod(self.patch_size) * in_channels
        self.norm_pix_loss, self.norm_crop_loss = norm_pix_loss, norm_crop_loss and not norm_pix_loss
        if (interp_residual or refine_width) and norm_pix_loss:
            raise ValueError("interp_residual and refine_width need voxel targets in the crop's frame (norm_crop_loss "
                             "or raw), not norm_pix_loss: per-patch target statistics would leak the hidden patches")
        self.interp_residual = interp_residual
        self.refiner = VoxelRefiner(in_channels, refine_width) if refine_width else None
        self.decoder = MAEDecoder(
            self.grid, embed_dim, self.patch_dim, decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio, qkv_bias
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None = None) -> MAEOutput:
        """x (B, C, X, Y, Z), mask (B, N) bool True = hidden, valid (B, N) bool or None."""
        plan = self.plan(x, mask, valid)
        latent = self.encoder.forward_visible(x, plan.visible.ids, plan.visible.keep)  # B L D
        pred = self.decoder(latent, plan.visible, plan.decoded).float()  # B N P*C
        source = patchify(x.float(), self.patch_size)
        stats = self.target_stats(source, valid, mask)
        target = self._in_target_units(source, stats)
        visible = ~mask if valid is None else valid & ~mask
        if self.interp_residual:  # the decoder corrects the interpolation of the hidden voxels
            smooth = interpolate_from_visible(x.float(), visible, self.patch_size)
            pred = pred + self._in_target_units(patchify(smooth, self.patch_size), stats)
        if self.refiner is not None:  # voxel-level: continues visible boundaries into hidden patches
            pred = pred + self._refine(pred, target, visible)
        token_loss = (pred - target).pow(2).mean(-1)  # B N
        scored = mask if valid is None else mask & valid
        if valid is not None:
            token_loss = token_loss * valid
        loss = (token_loss * scored).sum() / scored.sum()
        return MAEOutput(loss, pred, target, token_loss)

    def _refine(self, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """pred, target (B, N, P*C) in target units, visible (B, N) bool -> (B, N, P*C) the
        refiner's correction; hidden and out-of-play voxels of the target never enter it."""
        vol = lambda t: unpatchify(t, self.patch_size, self.grid, self.in_channels)  # noqa: E731
        seen = token_volume(visible, self.patch_size, self.grid).to(pred.dtype)  # B 1 X Y Z
        return patchify(self.refiner(vol(pred), vol(target) * seen, seen), self.patch_size)

    @torch.compiler.disable
    def plan(self, x: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None) -> _Plan:
        """Check shapes and build the encoder's and decoder's token selections (one host sync)."""
        self.encoder.check_input(x)
        want = (x.shape[0], self.num_tokens)
        for name, t in (("mask", mask), ("valid", valid)):
            if t is not None and (t.dtype != torch.bool or tuple(t.shape) != want):
                raise ValueError(f"{name} must be bool {want}, got {t.dtype} {tuple(t.shape)}")
        visible = ~mask if valid is None else valid & ~mask
        scored = mask if valid is None else mask & valid
        n_valid = valid.sum(1) if valid is not None else torch.full_like(visible[:, 0], self.num_tokens, dtype=torch.long)
        n_visible, n_scored, n_valid = torch.stack([visible.sum(1), scored.sum(1), n_valid]).tolist()
        bad = [i for i, (v, s) in enumerate(zip(n_visible, n_scored)) if v == 0 or s == 0]
        if bad:
            raise ValueError(f"samples {bad} have no visible or no hidden valid token; masks must leave both")
        all_valid = min(n_valid) == self.num_tokens
        decoded = None if all_valid else select_tokens(valid, n_valid)
        return _Plan(select_tokens(visible, n_visible), decoded)

    def target_stats(self, source: torch.Tensor, valid: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None):
        """Patchified x (B, N, P*C) -> the (mean, std) its targets are normalised with: per
        token (norm_pix_loss), per crop over the visible tokens (norm_crop_loss: valid and not
        hidden by ``mask`` (B, N); all valid tokens without a mask), or None (raw).

        norm_crop_loss never reads a hidden voxel: the frame that maps a prediction back to
        intensities (:meth:`reconstruct`) depends on what the model was shown only, so a lesion
        in one hidden token cannot move the expected value of any other voxel. With
        ``input_norm`` these are the statistics the encoder normalises its input with."""
        if self.norm_pix_loss:
            return patch_stats(source, self.in_channels)
        if self.norm_crop_loss:
            seen = valid if mask is None else (~mask if valid is None else valid & ~mask)
            return crop_stats(source, self.in_channels, seen)
        return None

    def _in_target_units(self, tokens: torch.Tensor, stats) -> torch.Tensor:
        if stats is None:
            return tokens
        mean, std = stats
        return ((per_channel(tokens, self.in_channels) - mean) / std).flatten(2)

    def patch_target(self, x: torch.Tensor, valid: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, X, Y, Z) (and valid, mask (B, N) for ``norm_crop_loss``) -> (B, N, P*C)
        float32 target, as ``forward`` computes it."""
        source = patchify(x.float(), self.patch_size)
        return self._in_target_units(source, self.target_stats(source, valid, mask))

    def reconstruct(
        self, pred: torch.Tensor, x: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None, paste: bool = True,
    ) -> torch.Tensor:
        """(B, N, P*C) predictions -> (B, C, X, Y, Z) volume in x's intensity units.

        With ``x`` given, normalised predictions are mapped back to voxel units with the
        statistics of :meth:`target_stats` (x's per-patch mean/std with ``norm_pix_loss``; its
        visible tokens' mean/std with ``norm_crop_loss``, so pass the ``mask`` and ``valid``
        the prediction was made with); without x they stay in target units. With ``x``,
        ``mask`` and ``paste``, tokens not hidden are pasted from x (MAE's "reconstruction +
        visible" figure).
        """
        pred = pred.float()
        if x is not None:
            source = patchify(x.float(), self.patch_size)
            stats = self.target_stats(source, valid, mask)
            if stats is not None:
                mean, std = stats
                pred = (per_channel(pred, self.in_channels) * std + mean).flatten(2)
            if mask is not None and paste:
                pred = torch.where(mask[..., None], pred, source)
        return unpatchify(pred, self.patch_size, self.grid, self.in_channels)
