"""MAE model config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medmae.config.base import StrictModel


class ModelConfig(StrictModel):
    size: Literal["tiny", "small", "base", "large", "custom"] = "tiny"
    """Preset encoder size; "custom" uses the explicit numbers below."""
    in_channels: int = Field(1, ge=1)
    patch_size: tuple[int, int, int] = (16, 16, 16)
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    decoder_embed_dim: int | None = None
    decoder_depth: int | None = None
    decoder_num_heads: int | None = None
    norm_pix_loss: bool = True
