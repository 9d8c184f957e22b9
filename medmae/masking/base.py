"""What every masking strategy takes and returns.

Conventions (see ``medmae.tokens`` for token order):
  mask:  bool (B, N), True = hidden from the encoder and predicted by the decoder.
  valid: bool (B, N), True = token in play. Tokens outside the body are not valid when
         foreground-only masking is on: neither visible nor predicted, and dropped.
  visible = valid & ~mask. Per sample, the number of hidden tokens is exactly
  round(ratio * n_valid) (at least 1 visible and 1 hidden), so counts can differ between
  samples of a batch only through n_valid.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace

import torch
from torch import nn


@dataclass
class MaskContext:
    """Everything a strategy may look at for one batch, already on the model's device.

    grid:        (gx, gy, gz) token grid.
    image:       (B, C, X, Y, Z) float crops (the generator network of adversarial masking reads it).
    valid:       (B, N) bool, token in play (all True when foreground masking is off).
    body:        (B, N) float fraction of body voxels per token.
    maps:        per-token integer priors, each (B, N) long: "anatomy", "tissue",
                 "supervoxels" (the most frequent label in the token), when cached.
    token_scores:(B, N) float difficulty per token (loss-guided masking), filled by the
                 engine when the strategy sets ``needs_scores``.
    mirror:      (B, N) long, each token's left-right mirror about the case's mid-sagittal
                 plane (-1: none), when the batch carries "midline"; None otherwise
                 (symmetric masking then mirrors about the crop's centre).
    """

    grid: tuple[int, int, int]
    image: torch.Tensor
    valid: torch.Tensor
    body: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    token_scores: torch.Tensor | None = None
    mirror: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.valid.shape[1]

    @property
    def device(self) -> torch.device:
        return self.valid.device

    def select(self, index: torch.Tensor) -> "MaskContext":
        """The sub-batch of samples ``index`` (1D long), every per-sample tensor sliced."""
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, index)

        return replace(
            self,
            image=pick(self.image),
            valid=pick(self.valid),
            body=pick(self.body),
            maps={k: pick(v) for k, v in self.maps.items()},
            token_scores=None if self.token_scores is None else pick(self.token_scores),
            mirror=None if self.mirror is None else pick(self.mirror),
        )


class MaskingStrategy(nn.Module, abc.ABC):
    """Base class: ``forward(ctx, step, generator) -> mask (B, N) bool``.

    An ``nn.Module`` so that strategies with state (an EMA, a generator network) move
    with ``.to(device)`` and save/restore through ``state_dict`` in checkpoints.

    Engine protocol, per training step:
      1. ``ctx = build_context(batch, ...)``;
      2. if ``strategy.needs_scores``: ``ctx.token_scores = strategy.score_tokens(model, x, ctx.valid, g, step)``;
      3. ``mask = strategy(ctx, step, g)``; the autoencoder trains on ``mask``;
      4. ``metrics = strategy.update(ctx, mask, out.token_loss.detach(), step)`` on every rank.
    """

    needs_scores: bool = False

    def __init__(self, ratio: float):
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"masking ratio must be in (0, 1), got {ratio}")
        self.ratio = float(ratio)

    @abc.abstractmethod
    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """ctx for B samples, training step, seeded generator -> mask (B, N) bool."""

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Called once per optimizer step, after all ``grad_accum`` micro-batches (EMA teachers)."""

    def update(self, ctx: MaskContext, mask: torch.Tensor, token_loss: torch.Tensor, step: int) -> dict[str, float]:
        """Called after the autoencoder's step with the detached per-token loss (B, N).

        Strategies that learn (adversarial generator) or keep statistics use it; returns
        metrics to log.
        """
        return {}
