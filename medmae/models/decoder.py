"""The MAE decoder: visible latents + mask tokens -> voxels of every decoded token."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medmae.models.pos_embed import sincos_pos_embed_3d
from medmae.models.token_select import Selection, gather_tokens, scatter_tokens
from medmae.models.vit import Block, init_vit_weights, run_blocks


class MAEDecoder(nn.Module):
    """Light transformer decoder over the token grid.

    Args:
        grid: token grid (gx, gy, gz).
        encoder_dim: width of the encoder latents.
        patch_dim: values predicted per token (px * py * pz * C).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: decoder transformer shape.
    """

    def __init__(
        self,
        grid: Sequence[int],
        encoder_dim: int,
        patch_dim: int,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}")
        self.grid = tuple(int(g) for g in grid)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_pos_embed_3d(self.grid, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.pred = nn.Linear(embed_dim, patch_dim)
        self.apply(init_vit_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def fill(self, latent: torch.Tensor, visible: Selection) -> torch.Tensor:
        """(B, L, De) visible latents -> (B, N, D) sequence: latents at their tokens,
        the mask token everywhere else, plus position codes."""
        y = self.embed(latent)
        b, n = y.shape[0], self.num_tokens
        base = self.mask_token.to(y.dtype).expand(b, n + 1, -1)  # slot N swallows padding
        full = scatter_tokens(base, visible.scatter_index(n), y)[:, :n]
        return full + self.pos_embed

    def forward(self, latent: torch.Tensor, visible: Selection, decoded: Selection | None = None) -> torch.Tensor:
        """Predict voxels: (B, L, De) -> (B, N, P*C).

        decoded: the tokens the decoder attends over and predicts (None = all N). Tokens
        outside it get prediction 0.
        """
        seq = self.fill(latent, visible)
        if decoded is None:
            return self.pred(run_blocks(self.blocks, self.norm, seq))
        out = self.pred(run_blocks(self.blocks, self.norm, gather_tokens(seq, decoded.ids), decoded.keep))  # B M P*C
        zeros = out.new_zeros(out.shape[0], self.num_tokens + 1, out.shape[-1])
        return scatter_tokens(zeros, decoded.scatter_index(self.num_tokens), out)[:, : self.num_tokens]
