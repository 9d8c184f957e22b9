"""Loss-guided hard-patch masking with an easy-to-hard schedule (HPM, Wang et al. 2023)."""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.loss_predictor import LossPredictor
from medmae.masking.scoring import complementary_token_loss, unwrap
from medmae.masking.select import hidden_counts, topk_by_count, uniform

Schedule = Literal["linear", "cosine"]


def ramp(step: int, start: float, end: float, steps: int, schedule: Schedule) -> float:
    """Value going from ``start`` (step 0) to ``end`` (step >= ``steps``), linear or cosine."""
    p = min(max(step / steps, 0.0), 1.0) if steps > 0 else 1.0
    if schedule == "cosine":
        p = 0.5 * (1.0 - math.cos(math.pi * p))
    elif schedule != "linear":
        raise ValueError(f"schedule must be linear or cosine, got {schedule!r}")
    return start + (end - start) * p


class LossGuidedMasking(MaskingStrategy):
    """Hide the hardest tokens, easy-to-hard.

    Of the k = round(ratio * n_valid) hidden tokens of a sample, round(alpha(step) * k)
    are the valid tokens of highest difficulty (``ctx.token_scores``) and the rest are
    random among the remaining valid tokens. alpha ramps from ``alpha_start`` to
    ``alpha_end`` over ``schedule_steps`` training steps (linear or cosine).

    Difficulty comes from :meth:`score_tokens` (the engine calls it because
    ``needs_scores``): the reconstruction loss of each token from no-grad passes of the
    model itself, or of an EMA copy of it kept here when ``ema_decay`` is set (a steadier
    teacher; it is updated once per optimizer step and saved in ``state_dict``).

    With ``score_every`` = n > 1 the exact scores are refreshed only at steps that are
    multiples of n; each refresh also trains a light :class:`LossPredictor`, which scores
    the crops of the other steps (see ``medmae/masking/loss_predictor.py`` for why a
    predictor rather than cached scores: every step brings new random crops).
    """

    needs_scores = True

    def __init__(self, ratio: float, alpha_start: float = 0.0, alpha_end: float = 0.5,
                 schedule_steps: int = 1000, schedule: Schedule = "linear", ema_decay: float | None = None,
                 score_every: int = 1, in_channels: int = 1, patch_size: Sequence[int] = (16, 16, 16),
                 predictor_lr: float = 1e-3):
        super().__init__(ratio)
        if score_every < 1:
            raise ValueError(f"score_every must be >= 1, got {score_every}")
        for name, a in (("alpha_start", alpha_start), ("alpha_end", alpha_end)):
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {a}")
        if schedule_steps < 0:
            raise ValueError(f"schedule_steps must be >= 0, got {schedule_steps}")
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be linear or cosine, got {schedule!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.alpha_start, self.alpha_end = float(alpha_start), float(alpha_end)
        self.schedule_steps, self.schedule = int(schedule_steps), schedule
        self.ema_decay = ema_decay
        self._ema: AveragedModel | None = None  # plain attribute: created lazily, saved as extra state
        self._ema_pending: dict[str, torch.Tensor] | None = None
        self.score_every = int(score_every)
        self.predictor = LossPredictor(in_channels, patch_size, lr=predictor_lr) if score_every > 1 else None
        self._predictor_corr: list[float] = []

    def alpha(self, step: int) -> float:
        """Fraction of the hidden tokens chosen by difficulty at ``step``."""
        return ramp(step, self.alpha_start, self.alpha_end, self.schedule_steps, self.schedule)

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool."""
        k = hidden_counts(ctx.valid, self.ratio)
        noise = uniform((ctx.batch_size, ctx.num_tokens), generator, ctx.device)
        alpha = self.alpha(step)
        if alpha > 0:
            if ctx.token_scores is None:
                raise ValueError("loss-guided masking needs ctx.token_scores (call strategy.score_tokens first)")
            hard = topk_by_count(ctx.token_scores, ctx.valid, torch.round(k.double() * alpha).long())
            noise = noise + 2.0 * hard
        return topk_by_count(noise, ctx.valid, k)

    def refreshes(self, step: int | None) -> bool:
        """True when ``step`` gets exact scores (always with ``score_every`` 1 or no step given)."""
        return self.predictor is None or step is None or step % self.score_every == 0

    def score_tokens(self, model: nn.Module, x: torch.Tensor, valid: torch.Tensor,
                     generator: torch.Generator, step: int | None = None) -> torch.Tensor:
        """x (B, C, X, Y, Z), valid (B, N) -> (B, N) difficulty (reconstruction loss when hidden).

        Exact at refresh steps (:meth:`refreshes`), where the loss predictor also learns from
        them; the predictor's scores otherwise. Scoring never moves the EMA teacher: every
        micro-batch of an optimizer step is scored by the same teacher (see
        :meth:`after_optimizer_step`).
        """
        if not self.refreshes(step):
            return self.predictor.predict(x, valid)
        scorer = model if self.ema_decay is None else self._teacher(model)
        scores = complementary_token_loss(scorer, x, valid, generator)
        if self.predictor is not None:
            self._predictor_corr.append(self.predictor.fit(x, scores, valid))
        return scores

    def update(self, ctx: MaskContext, mask: torch.Tensor, token_loss: torch.Tensor, step: int) -> dict[str, float]:
        """Metrics: at refresh steps, how well the predictor ranked the new crops before it
        learned from them (correlation with the exact standardised log loss)."""
        if not self._predictor_corr:
            return {}
        corr, self._predictor_corr = self._predictor_corr, []
        return {"loss_guided/predictor_corr": sum(corr) / len(corr)}

    def after_optimizer_step(self, model: nn.Module) -> None:
        """One EMA update per optimizer step: teacher = decay * teacher + (1 - decay) * model,
        so the configured decay means the same whatever ``grad_accum`` is."""
        if self.ema_decay is not None:
            self._teacher(model).update_parameters(unwrap(model))

    def _teacher(self, model: nn.Module) -> AveragedModel:
        """The EMA copy, created on first use (from a checkpoint when one was loaded)."""
        if self._ema is None:
            plain = unwrap(model)
            ema = AveragedModel(plain, multi_avg_fn=get_ema_multi_avg_fn(self.ema_decay))
            ema.eval().requires_grad_(False)
            if self._ema_pending is not None:
                ema.load_state_dict(self._ema_pending)
                self._ema_pending = None
            else:
                ema.update_parameters(plain)  # n_averaged 0 -> 1: a copy; later updates average
            object.__setattr__(self, "_ema", ema)  # not a submodule: it exists only once a model is seen
        return self._ema

    def get_extra_state(self) -> dict[str, Any]:
        state = self._ema.state_dict() if self._ema is not None else self._ema_pending
        return {"ema": None if state is None else {k: v.detach().clone() for k, v in state.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        ema_state = state.get("ema")
        if ema_state is None:
            object.__setattr__(self, "_ema", None)
            self._ema_pending = None
        elif self._ema is not None:
            self._ema.load_state_dict(ema_state)
        else:
            self._ema_pending = dict(ema_state)
