"""The MAE encoder: a 3D ViT that can run on a subset of tokens.

No class token: every output token is a grid cell, which is what dense downstream heads
(UNETR, anomaly maps) consume, and what MONAI's ViT produces with ``classification=False``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medmae.models.intensity import crop_stats
from medmae.models.pos_embed import sincos_pos_embed_3d
from medmae.models.token_select import gather_tokens
from medmae.models.vit import Block, PatchEmbed3D, init_vit_weights, run_blocks
from medmae.tokens import grid_shape, patchify


def _triple(v: int | Sequence[int], name: str) -> tuple[int, int, int]:
    t = (int(v),) * 3 if isinstance(v, int) else tuple(int(a) for a in v)
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"{name} must be one or three positive ints, got {v}")
    return t


def normalise_input(x: torch.Tensor, patch_size: Sequence[int], seen: torch.Tensor | None) -> torch.Tensor:
    """(B, C, X, Y, Z) -> x normalised per sample and channel: (x - mean) / std over the voxels
    of the tokens marked in ``seen`` (B, N) (all tokens when None); var + 1e-6."""
    c = x.shape[1]
    mean, std = crop_stats(patchify(x.float(), patch_size), c, seen)  # B 1 1 C
    mean, std = mean.reshape(-1, c, 1, 1, 1), std.reshape(-1, c, 1, 1, 1)
    return ((x.float() - mean) / std).to(x.dtype)


class ViTEncoder3D(nn.Module):
    """Patch embedding + fixed 3D sin-cos positions + pre-norm blocks + final LayerNorm.

    Args:
        img_size: crop size (X, Y, Z) in voxels; divisible by ``patch_size``.
        patch_size: voxels per token (px, py, pz); anisotropic allowed.
        in_channels: image channels C.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer shape.
        input_norm: normalise the input per sample and channel by the mean / std of the
            voxels of the tokens the encoder sees (the visible ones under a mask), so a crop's
            absolute level and scale (CT in [0, 1], z-scored MR, a bright or dark region)
            need not be learned. Every user of the encoder (MAE, anomaly scoring,
            segmentation) gets the same normalisation, since it lives here.
    """

    def __init__(
        self,
        img_size: int | Sequence[int],
        patch_size: int | Sequence[int] = 16,
        in_channels: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        input_norm: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.img_size = _triple(img_size, "img_size")
        self.patch_size = _triple(patch_size, "patch_size")
        self.grid = grid_shape(self.img_size, self.patch_size)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.in_channels, self.embed_dim, self.depth = in_channels, embed_dim, depth
        self.num_heads, self.mlp_ratio, self.qkv_bias = num_heads, float(mlp_ratio), qkv_bias
        self.input_norm = bool(input_norm)
        self.patch_embed = PatchEmbed3D(in_channels, embed_dim, self.patch_size)
        self.register_buffer("pos_embed", sincos_pos_embed_3d(self.grid, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(init_vit_weights)

    def architecture(self) -> dict:
        """The constructor arguments, JSON-able (what an export records)."""
        return {
            "img_size": list(self.img_size), "patch_size": list(self.patch_size),
            "in_channels": self.in_channels, "embed_dim": self.embed_dim, "depth": self.depth,
            "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio, "qkv_bias": self.qkv_bias,
            "input_norm": self.input_norm,
        }

    @classmethod
    def from_architecture(cls, arch: dict, img_size: Sequence[int] | None = None) -> "ViTEncoder3D":
        """A fresh encoder from :meth:`architecture` (an export's ``architecture``), for
        ``img_size`` (default: the recorded one); exports without ``input_norm`` predate it."""
        return cls(tuple(img_size if img_size is not None else arch["img_size"]), arch["patch_size"],
                   arch["in_channels"], arch["embed_dim"], arch["depth"], arch["num_heads"], arch["mlp_ratio"],
                   arch["qkv_bias"], arch.get("input_norm", False))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless x is (B, in_channels, *img_size)."""
        want = (self.in_channels, *self.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected input (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B, N, D) patch tokens plus position codes.

        ``seen`` (B, N) bool marks the tokens whose voxels give the ``input_norm``
        statistics (None = all tokens)."""
        self.check_input(x)
        if self.input_norm:
            x = normalise_input(x, self.patch_size, seen)
        return self.patch_embed(x) + self.pos_embed

    def run_blocks(
        self, tokens: torch.Tensor, keep: torch.Tensor | None = None, hidden: list | None = None
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D) through the blocks and final norm; ``keep`` (B, L) bool
        marks real tokens (None = all real); block outputs are appended to ``hidden``."""
        return run_blocks(self.blocks, self.norm, tokens, keep, hidden)

    def forward_visible(
        self, x: torch.Tensor, ids_keep: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode only the tokens ``ids_keep``.

        x: (B, C, X, Y, Z); ids_keep: (B, L) long token indices (padding entries may hold
        any index in [0, N)); keep: (B, L) bool, True = real token, False = padding (None = all real).
        Returns (B, L, D); padded rows hold values no real row depends on.
        """
        seen = None
        if self.input_norm:
            seen = torch.zeros(x.shape[0], self.num_tokens, dtype=torch.bool, device=x.device)
            seen.scatter_(1, ids_keep, torch.ones_like(ids_keep, dtype=torch.bool) if keep is None else keep)
        return self.run_blocks(gather_tokens(self.embed(x, seen), ids_keep), keep)

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """(B, C, X, Y, Z) -> (B, N, D) all tokens, normalised.

        With ``return_hidden`` also the list of ``depth`` block outputs (B, N, D) before the
        final norm: the same as MONAI ``ViT(...)(x)[1]``, what UNETR-style decoders read.
        """
        hidden: list | None = [] if return_hidden else None
        out = self.run_blocks(self.embed(x), None, hidden)
        return (out, hidden) if return_hidden else out
