"""MAE model config: a size preset plus optional explicit overrides.

``size`` picks a preset from :mod:`medmae.models.sizes`; every number left ``None`` comes
from it, every number given overrides it. ``size: custom`` has no preset, so the encoder
numbers (``embed_dim``, ``depth``, ``num_heads``) must all be given; the decoder then
defaults to ``decoder_embed_dim = embed_dim // 2`` (even), 4 layers, 32-wide heads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medmae.config.base import StrictModel


class ModelConfig(StrictModel):
    size: Literal["tiny", "small", "base", "large", "custom"] = "tiny"
    """Preset encoder/decoder size (see docs/model.md); "custom" uses the explicit numbers below."""
    in_channels: int = Field(1, ge=1)
    """Input channels (e.g. 2 for T1 + FLAIR stacked as channels)."""
    patch_size: tuple[int, int, int] = (16, 16, 16)
    """Voxels per token along (X, Y, Z); anisotropic allowed, e.g. (16, 16, 4) for thick slices."""
    embed_dim: int | None = Field(None, ge=6)
    depth: int | None = Field(None, ge=1)
    num_heads: int | None = Field(None, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    """MLP hidden width = mlp_ratio * width, encoder and decoder."""
    decoder_embed_dim: int | None = Field(None, ge=6)
    decoder_depth: int | None = Field(None, ge=1)
    decoder_num_heads: int | None = Field(None, ge=1)
    qkv_bias: bool = True
    """Bias on the fused qkv projection (as in MAE). MONAI's ViT/UNETR default is False:
    build those with ``qkv_bias=True`` to load an encoder trained with it."""
    norm_pix_loss: bool = True
    """Regress per-patch, per-channel normalised voxels (MAE's norm_pix_loss)."""
    norm_crop_loss: bool = False
    """Without norm_pix_loss: regress voxels normalised per crop and channel (mean / std
    over the voxels of the crop's visible tokens: no hidden voxel sets the frame its
    reconstruction is mapped back with). Keeps patch intensity levels in the target (unlike
    norm_pix_loss) while CT and MR crops weigh the same in the loss (unlike raw voxels)."""
    input_norm: bool = False
    """The encoder normalises its input per crop and channel (mean / std over the voxels of
    the tokens it sees: the visible ones in pretraining and anomaly scoring, the whole window
    in segmentation). Recorded in exports, so every head applies it."""
    interp_residual: bool = False
    """The decoder predicts a correction to the interpolation of the hidden voxels from the
    visible ones (normalised Gaussian smoothing, sigma half a patch) instead of the voxels
    themselves. Needs norm_crop_loss or raw targets (not norm_pix_loss)."""
    refine_width: int = Field(0, ge=0)
    """Feature width of the voxel refiner (0 = none): three 3^3 convolutions after the decoder
    that see the prediction and the visible voxels and continue boundaries into the hidden
    patches (medmae/models/refiner.py). Needs norm_crop_loss or raw targets (not norm_pix_loss)."""

    @field_validator("patch_size", mode="before")
    @classmethod
    def _one_int_means_cube(cls, v):
        if isinstance(v, int):
            return (v, v, v)
        return v

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, v):
        if any(p < 1 for p in v):
            raise ValueError(f"patch sizes must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _voxel_decoding_needs_crop_frame(self):
        for key, on in (("interp_residual", self.interp_residual), ("refine_width", self.refine_width)):
            if on and self.norm_pix_loss:
                raise ValueError(f"model.{key} needs model.norm_pix_loss: false (use norm_crop_loss): "
                                 "per-patch target statistics would leak the hidden patches")
        return self
