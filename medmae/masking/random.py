"""MAE random masking: every valid token equally likely to be hidden."""

from __future__ import annotations

import torch

from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.select import topk_mask, uniform


class RandomMasking(MaskingStrategy):
    """Hide a uniformly random subset of round(ratio * n_valid) valid tokens per sample
    (He et al. 2022: argsort of uniform noise)."""

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool."""
        scores = uniform((ctx.batch_size, ctx.num_tokens), generator, ctx.device)
        return topk_mask(scores, ctx.valid, self.ratio)
