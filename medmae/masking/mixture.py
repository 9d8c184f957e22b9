"""A weighted mixture of strategies, chosen per sample."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medmae.masking.base import MaskContext, MaskingStrategy


class MixtureMasking(MaskingStrategy):
    """Each sample is masked by strategy i with probability weights[i] / sum(weights).

    The choice is drawn from the passed generator, so one batch mixes strategies. Each
    strategy sees only its own samples (``ctx.select``), in ``forward`` and in ``update``;
    every strategy is called even when it got no sample, so that strategies that
    synchronise across ranks (adversarial) do so on every rank. When some strategy
    ``needs_scores``, :meth:`score_tokens` asks the first such strategy and all of them
    read the same ``ctx.token_scores``.
    """

    def __init__(self, strategies: Sequence[MaskingStrategy], weights: Sequence[float]):
        if not strategies or len(strategies) != len(weights):
            raise ValueError(f"mixture needs one weight per strategy, got {len(strategies)} strategies "
                             f"and {len(weights)} weights")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
        super().__init__(strategies[0].ratio)
        self.strategies = nn.ModuleList(strategies)
        self.register_buffer("weights", torch.tensor([float(w) for w in weights], dtype=torch.float64))
        self._choice: torch.Tensor | None = None

    @property
    def needs_scores(self) -> bool:  # type: ignore[override]
        return any(s.needs_scores for s in self.strategies)

    def score_tokens(self, model: nn.Module, x: torch.Tensor, valid: torch.Tensor,
                     generator: torch.Generator, step: int | None = None) -> torch.Tensor:
        """Difficulty (B, N) from the first strategy that needs scores."""
        for s in self.strategies:
            if s.needs_scores:
                return s.score_tokens(model, x, valid, generator, step)
        raise ValueError("no strategy of this mixture uses token scores")

    def choose(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) long index of the strategy masking each sample."""
        if batch_size == 0:
            return torch.zeros(0, dtype=torch.long)
        w = self.weights.to(generator.device)
        return torch.multinomial(w, batch_size, replacement=True, generator=generator)

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool, row b from strategy choice[b]."""
        choice = self.choose(ctx.batch_size, generator).to(ctx.device)
        mask = torch.zeros_like(ctx.valid)
        for i, strategy in enumerate(self.strategies):
            idx = torch.nonzero(choice == i).flatten()
            mask[idx] = strategy(ctx.select(idx), step, generator)
        self._choice = choice
        return mask

    def after_optimizer_step(self, model) -> None:
        for strategy in self.strategies:
            strategy.after_optimizer_step(model)

    def update(self, ctx: MaskContext, mask: torch.Tensor, token_loss: torch.Tensor, step: int) -> dict[str, float]:
        """Each strategy updates on its own samples; metrics are prefixed with its index."""
        if self._choice is None or self._choice.shape[0] != mask.shape[0]:
            raise RuntimeError("mixture masking: update() called without a matching forward()")
        metrics: dict[str, float] = {}
        for i, strategy in enumerate(self.strategies):
            idx = torch.nonzero(self._choice == i).flatten()
            sub = strategy.update(ctx.select(idx), mask[idx], token_loss[idx], step)
            metrics.update({f"mixture{i}/{k}": v for k, v in sub.items()})
            metrics[f"mixture{i}/share"] = float(idx.numel()) / max(mask.shape[0], 1)
        self._choice = None
        return metrics
