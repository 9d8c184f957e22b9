"""The mask-generator network of adversarial masking: crop -> one logit per token."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def stage_strides(patch_size: Sequence[int]) -> list[tuple[int, int, int]]:
    """Factor each patch edge into strides of 2 (then one odd rest): (16, 16, 8) ->
    [(2,2,2), (2,2,2), (2,2,2), (2,2,1)]; their product per axis is the patch size."""
    per_axis = []
    for p in patch_size:
        if p < 1:
            raise ValueError(f"patch size must be positive, got {tuple(patch_size)}")
        factors = []
        while p % 2 == 0:
            factors.append(2)
            p //= 2
        if p > 1:
            factors.append(p)
        per_axis.append(factors)
    depth = max(1, max(len(f) for f in per_axis))
    return [tuple(f[i] if i < len(f) else 1 for f in per_axis) for i in range(depth)]


class MaskGenerator(nn.Module):
    """(B, C, X, Y, Z) crop -> (B, N) logits on the token grid (token order of ``medmae.tokens``).

    Strided non-overlapping Conv3d stages (kernel = stride), with channels doubling up to
    ``width`` as the resolution halves, take the crop down to the token grid; normalised
    grid coordinates are appended (so the policy can also learn where hard regions lie);
    ``depth`` 3x3x3 convolutions mix neighbouring tokens; a 1x1x1 head (no bias) gives the
    logits. The head starts at zero: the initial policy is
    uniform, i.e. random masking.
    """

    def __init__(self, in_channels: int, patch_size: Sequence[int], width: int = 16, depth: int = 2):
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 0:
            raise ValueError(f"need in_channels >= 1, width >= 1, depth >= 0; got {in_channels}, {width}, {depth}")
        strides = stage_strides(patch_size)
        layers: list[nn.Module] = []
        ch = in_channels
        for i, stride in enumerate(strides):
            out = max(min(width, 4), width >> (len(strides) - 1 - i))  # narrow at full resolution
            layers += [nn.Conv3d(ch, out, kernel_size=stride, stride=stride), nn.GroupNorm(1, out), nn.GELU()]
            ch = out
        self.down = nn.Sequential(*layers)
        mix: list[nn.Module] = []
        for i in range(depth):
            mix += [nn.Conv3d(width + 3 if i == 0 else width, width, 3, padding=1), nn.GroupNorm(1, width), nn.GELU()]
        self.mix = nn.Sequential(*mix)
        # no bias: the policy is invariant to a shift of all logits, a bias would only drift
        self.head = nn.Conv3d(width + 3 if depth == 0 else width, 1, 1, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B, N) float32 logits."""
        f = self.down(image)
        b, _, gx, gy, gz = f.shape
        axes = [torch.linspace(-1, 1, g, device=f.device, dtype=f.dtype) for g in (gx, gy, gz)]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).expand(b, 3, gx, gy, gz)
        f = self.mix(torch.cat([f, coords], 1))
        return self.head(f).flatten(1).float()
