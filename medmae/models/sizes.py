"""Size presets for the 3D MAE and their resolution against a :class:`ModelConfig`.

Encoder presets follow ViT (Ti uses a 96-wide, 4-layer net for CPU runs). Decoders follow
MAE's "light decoder" advice: about half the encoder width, 32-wide heads, and a few
layers; base uses MONAI MaskedAutoEncoderViT's 384 x 4 so the two compare like for like.

=====  =====  =====  =====  ==========  ==========  ==========  ===============
size   width  depth  heads  dec. width  dec. depth  dec. heads  params* enc/all
=====  =====  =====  =====  ==========  ==========  ==========  ===============
tiny      96      4      3          64           2           2  0.84 M / 1.2 M
small    384     12      6         256           4           8    23 M / 27 M
base     768     12     12         384           4          12    88 M / 97 M
large   1024     24     16         512           8          16   307 M / 334 M
=====  =====  =====  =====  ==========  ==========  ==========  ===============

(*) patch 16, one channel, MLP ratio 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from medmae.config.base import ConfigError
from medmae.models.config import ModelConfig


@dataclass(frozen=True)
class MAEDims:
    """Every number the network needs, resolved (no ``None``)."""

    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


PRESETS: dict[str, MAEDims] = {
    "tiny": MAEDims(96, 4, 3, 64, 2, 2),
    "small": MAEDims(384, 12, 6, 256, 4, 8),
    "base": MAEDims(768, 12, 12, 384, 4, 12),
    "large": MAEDims(1024, 24, 16, 512, 8, 16),
}


def _custom_defaults(cfg: ModelConfig) -> MAEDims:
    """Preset-free dims: the encoder numbers must be given; the decoder gets light defaults."""
    missing = [k for k in ("embed_dim", "depth", "num_heads") if getattr(cfg, k) is None]
    if missing:
        raise ConfigError(f"model.size 'custom' needs model.{', model.'.join(missing)}")
    dec = cfg.decoder_embed_dim or max(32, (cfg.embed_dim // 2) // 32 * 32)
    return MAEDims(cfg.embed_dim, cfg.depth, cfg.num_heads, dec, 4, max(1, dec // 32))


def resolve_dims(cfg: ModelConfig) -> MAEDims:
    """Preset (or custom defaults) with every explicit config number applied on top."""
    base = _custom_defaults(cfg) if cfg.size == "custom" else PRESETS[cfg.size]
    given = {k: getattr(cfg, k) for k in base.as_dict() if getattr(cfg, k) is not None}
    dims = MAEDims(**{**base.as_dict(), **given})
    for width, heads, name in (
        (dims.embed_dim, dims.num_heads, "model.embed_dim / model.num_heads"),
        (dims.decoder_embed_dim, dims.decoder_num_heads, "model.decoder_embed_dim / model.decoder_num_heads"),
    ):
        if width % heads:
            raise ConfigError(f"{name}: width {width} is not divisible by {heads} heads")
        if width % 2:
            raise ConfigError(f"{name}: width {width} must be even (sin-cos position embedding)")
    return dims
