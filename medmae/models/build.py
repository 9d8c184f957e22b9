"""Build the MAE from a :class:`ModelConfig` and the crop size."""

from __future__ import annotations

from typing import Sequence

from medmae.models.config import ModelConfig
from medmae.models.encoder import ViTEncoder3D
from medmae.models.mae import MaskedAutoencoder3D
from medmae.models.sizes import resolve_dims


def build_mae(cfg: ModelConfig, img_size: Sequence[int]) -> MaskedAutoencoder3D:
    """ModelConfig + crop size (X, Y, Z) -> an initialised :class:`MaskedAutoencoder3D`."""
    d = resolve_dims(cfg)
    return MaskedAutoencoder3D(
        img_size=tuple(img_size),
        patch_size=cfg.patch_size,
        in_channels=cfg.in_channels,
        embed_dim=d.embed_dim,
        depth=d.depth,
        num_heads=d.num_heads,
        decoder_embed_dim=d.decoder_embed_dim,
        decoder_depth=d.decoder_depth,
        decoder_num_heads=d.decoder_num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias,
        norm_pix_loss=cfg.norm_pix_loss,
        norm_crop_loss=cfg.norm_crop_loss,
        input_norm=cfg.input_norm,
        interp_residual=cfg.interp_residual,
        refine_width=cfg.refine_width,
    )


def build_encoder(cfg: ModelConfig, img_size: Sequence[int]) -> ViTEncoder3D:
    """ModelConfig + crop size -> the encoder alone (what exports and downstream heads use)."""
    d = resolve_dims(cfg)
    return ViTEncoder3D(
        tuple(img_size), cfg.patch_size, cfg.in_channels, d.embed_dim, d.depth, d.num_heads, cfg.mlp_ratio, cfg.qkv_bias,
        cfg.input_norm,
    )
