"""SegmentationViT: this project's ViT encoder with a UNETR decoder for any power-of-two patch.

MONAI's ``UNETR`` fixes patch 16 (four 2x up-samplings, skips from blocks 3, 6, 9 of 12).
Here the decoder has one stage per doubling the patch needs (patch 16: 4, patch 8: 3), and
each stage up-samples only the axes that still need it, so anisotropic patches such as
(16, 16, 4) work. Skips come from evenly spaced encoder blocks. Every piece is a MONAI
block: ``UnetrBasicBlock`` (full-resolution image features), ``UnetrPrUpBlock`` (one
transposed convolution per stage, as the first layer of MONAI's progressive up-sampler),
``UnetrUpBlock`` (up + concatenate skip + residual block), ``UnetOutBlock``.

With patch 16, 12 blocks and an isotropic crop the layer structure and skip indices are
MONAI UNETR's.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from medmae.models.encoder import ViTEncoder3D

Triple = tuple[int, int, int]


def stage_kernels(patch_size: Sequence[int]) -> list[Triple]:
    """Per decoder stage (coarse to fine) the up-sampling factor of each axis.

    (16, 16, 16) -> four (2, 2, 2); (16, 16, 4) -> [(2,2,1), (2,2,1), (2,2,2), (2,2,2)].
    Raises ValueError unless every patch side is a power of two and one side is >= 2.
    """
    logs = []
    for p in patch_size:
        e = int(round(math.log2(p))) if p > 0 else -1
        if e < 0 or 2 ** e != p:
            raise ValueError(f"the segmentation decoder needs power-of-two patch sides, got {tuple(patch_size)}")
        logs.append(e)
    n = max(logs)
    if n < 1:
        raise ValueError(f"patch {tuple(patch_size)} has nothing to up-sample")
    return [tuple(2 if stage >= n - e else 1 for e in logs) for stage in range(n)]  # type: ignore[misc]


def skip_layers(depth: int, stages: int) -> list[int]:
    """Indices into the encoder's hidden states for the ``stages - 1`` skips, shallow first
    (depth 12, 4 stages -> [3, 6, 9] as MONAI UNETR)."""
    return [min(depth - 1, depth * j // stages) for j in range(1, stages)]


class _SkipPath(nn.Module):
    """Tokens at the patch grid -> features ``len(kernels)`` stages finer (MONAI's UnetrPrUpBlock
    layout: a transposed conv, then [transposed conv + residual conv block] per further stage)."""

    def __init__(self, in_ch: int, out_ch: int, kernels: Sequence[Triple], norm: str, res_block: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers.append(UnetrPrUpBlock(3, in_ch if i == 0 else out_ch, out_ch, num_layer=0, kernel_size=3,
                                         stride=1, upsample_kernel_size=k, norm_name=norm))
            if i > 0:
                layers.append(UnetrBasicBlock(3, out_ch, out_ch, 3, 1, norm, res_block=res_block))
        self.path = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.path(x)


class SegmentationViT(nn.Module):
    """(B, C, X, Y, Z) crop -> (B, num_classes, X, Y, Z) logits.

    Args:
        encoder: the ViT (its ``img_size`` is the crop the network takes).
        num_classes: output channels, background included.
        feature_size: channels at full resolution; stage s (of n) has feature_size * 2**(n-s).
        norm: "instance" or "batch" normalisation in the conv blocks.
        res_block: residual conv blocks (as MONAI UNETR).
    """

    def __init__(self, encoder: ViTEncoder3D, num_classes: int, feature_size: int = 16,
                 norm: str = "instance", res_block: bool = True):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + one class), got {num_classes}")
        if feature_size < 1:
            raise ValueError(f"feature_size must be >= 1, got {feature_size}")
        self.encoder = encoder
        self.num_classes, self.feature_size = int(num_classes), int(feature_size)
        self.kernels = stage_kernels(encoder.patch_size)
        n, d, f = len(self.kernels), encoder.embed_dim, feature_size
        self.skip_layers = skip_layers(encoder.depth, n)
        self.image_block = UnetrBasicBlock(3, encoder.in_channels, f, 3, 1, norm, res_block=res_block)
        # skip j (1 = shallowest block) is up-sampled n - j stages and joins decoder stage n - j
        self.skips = nn.ModuleList(
            _SkipPath(d, f * 2 ** j, self.kernels[: n - j], norm, res_block) for j in range(1, n))
        self.ups = nn.ModuleList(
            UnetrUpBlock(3, d if s == 1 else f * 2 ** (n - s + 1), f * 2 ** (n - s), 3, self.kernels[s - 1],
                         norm, res_block=res_block) for s in range(1, n + 1))
        self.out = UnetOutBlock(3, f, num_classes)

    def _grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D, gx, gy, gz)."""
        b, _, d = tokens.shape
        return tokens.transpose(1, 2).reshape(b, d, *self.encoder.grid)

    def forward(self, x: torch.Tensor, encoder_grad: bool = True) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B, num_classes, X, Y, Z); ``encoder_grad=False`` runs the
        encoder without autograd (frozen encoder, decoder-only warm-up)."""
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            top, hidden = self.encoder(x, return_hidden=True)
        n = len(self.kernels)
        skips = [path(self._grid(hidden[i])) for path, i in zip(self.skips, self.skip_layers)]
        y = self._grid(top)
        for s, up in enumerate(self.ups, start=1):
            skip = skips[n - s - 1] if s < n else self.image_block(x)
            y = up(y, skip)
        return self.out(y)

    def architecture(self) -> dict:
        """JSON-able constructor arguments (encoder's included), what a saved model records."""
        return {"encoder": self.encoder.architecture(), "num_classes": self.num_classes,
                "feature_size": self.feature_size}


def build_segmenter(arch: dict, norm: str = "instance", res_block: bool = True) -> SegmentationViT:
    """:meth:`SegmentationViT.architecture` -> a freshly initialised network."""
    e = arch["encoder"]
    encoder = ViTEncoder3D.from_architecture(e)
    return SegmentationViT(encoder, arch["num_classes"], arch["feature_size"], norm, res_block)
