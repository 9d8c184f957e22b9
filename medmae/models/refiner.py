"""The voxel refiner: a small 3D convolution stack after the MAE decoder that continues
boundaries from the visible voxels into the hidden patches.

The decoder works on tokens: a hidden patch's prediction comes from token embeddings, which
keep little of the exact voxels along a visible neighbour's faces, so a boundary that enters
a hidden patch is drawn blurred or not at all (on brains, no better than interpolation:
docs/training.md). The refiner sees, at voxel level, the decoder's prediction, the visible
voxels (hidden ones zeroed) and which voxels are visible, and adds a correction. Its last
layer starts at zero, so a new refiner leaves the decoder's prediction unchanged.

Only the MAE's reconstruction uses it; the exported encoder is unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn


class VoxelRefiner(nn.Module):
    """(B, C, X, Y, Z) prediction, visible voxels and (B, 1, X, Y, Z) visibility -> correction.

    Args:
        channels: image channels C.
        width: feature channels of the hidden layers.
        dilations: one 3^3 convolution (GELU) per entry, with that dilation; the default
            (1, 2, 2) reaches 5 voxels from each side, beyond the centre of an 8^3 patch.
    """

    def __init__(self, channels: int, width: int, dilations: Sequence[int] = (1, 2, 2)):
        super().__init__()
        if width < 1 or not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"refiner width {width} and dilations {tuple(dilations)} must be >= 1 (and not empty)")
        layers, inp = [], 2 * channels + 1
        for d in dilations:
            layers.append(Convolution(3, inp, width, kernel_size=3, dilation=d, act="GELU", norm=None))
            inp = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv3d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.to(memory_format=torch.channels_last_3d)  # faster 3D convolutions on CPU (oneDNN)

    def forward(self, pred: torch.Tensor, seen: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """pred, seen (B, C, X, Y, Z) (seen: the visible voxels, 0 elsewhere), visible
        (B, 1, X, Y, Z) 0/1 -> (B, C, X, Y, Z) correction to add to ``pred``."""
        x = torch.cat([pred, seen, visible.to(pred.dtype)], 1).contiguous(memory_format=torch.channels_last_3d)
        return self.out(self.features(x)).contiguous()
