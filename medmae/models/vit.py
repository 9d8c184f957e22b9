"""ViT building blocks: 3D patch embedding and a pre-norm transformer block on SDPA.

Why not MONAI's ``TransformerBlock``/``SABlock``: by default SABlock computes attention with
``einsum`` + softmax, materialising (B, H, L, L) scores (the memory and time that
``scaled_dot_product_attention``'s flash/memory-efficient kernels avoid). With
``use_flash_attention=True`` it does call SDPA, but hands a (B, L) key mask to it
unreshaped and applies ``dropout_p`` in eval mode too, and every TransformerBlock owns a
``norm_cross_attn`` LayerNorm that its forward never uses (an unused parameter DDP
rejects). MONAI's ``MLPBlock`` costs nothing, so it is reused as is. Parameter names
match MONAI's ViT inside the blocks (``attn.qkv``, ``attn.out_proj``, ``mlp.linear1``,
``mlp.linear2``, ``norm1``, ``norm2``) and the fused qkv layout is MONAI's
(3, heads, head_dim), so trained blocks load into MONAI's ViT/UNETR one to one.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.mlp import MLPBlock
from torch import nn


class PatchEmbed3D(nn.Module):
    """(B, C, X, Y, Z) -> (B, N, D) with a Conv3d whose kernel = stride = patch."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: Sequence[int]):
        super().__init__()
        if in_channels < 1 or embed_dim < 1:
            raise ValueError(f"in_channels ({in_channels}) and embed_dim ({embed_dim}) must be >= 1")
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints, got {tuple(patch_size)}")
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B, N, D), tokens in ``medmae.tokens`` (C) order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D), optional bool (B, 1, 1, L) True = key may be attended -> (B, L, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B H L hd
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), 0.0, act="GELU", dropout_mode="vista3d")

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


def key_padding_mask(keep: torch.Tensor | None) -> torch.Tensor | None:
    """(B, L) bool True = real token -> (B, 1, 1, L) SDPA mask (None stays None)."""
    return None if keep is None else keep[:, None, None, :]


def run_blocks(
    blocks: nn.ModuleList, norm: nn.Module, tokens: torch.Tensor,
    keep: torch.Tensor | None = None, hidden: list | None = None,
) -> torch.Tensor:
    """(B, L, D) -> (B, L, D) through ``blocks`` then ``norm``; ``keep`` (B, L) bool marks
    real tokens (None = all real); each block's output is appended to ``hidden``."""
    attn_mask = key_padding_mask(keep)
    for blk in blocks:
        tokens = blk(tokens, attn_mask)
        if hidden is not None:
            hidden.append(tokens)
    return norm(tokens)


def init_vit_weights(module: nn.Module) -> None:
    """MAE's init: xavier-uniform Linear, zero biases, unit LayerNorm (use with ``.apply``)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PatchEmbed3D):
        w = module.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like a Linear over the patch
        nn.init.zeros_(module.proj.bias)
