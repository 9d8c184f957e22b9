"""Adversarial masking: a mask generator learns to hide what the autoencoder finds hardest.

The generator is a Plackett-Luce policy over tokens (one logit per token from
:class:`MaskGenerator`); a mask is a Gumbel-top-k draw of exactly round(ratio * n_valid)
valid tokens. It is trained by REINFORCE to MAXIMISE the reward = the sample's mean
reconstruction loss over its hidden tokens, while the autoencoder minimises that loss:

    generator loss = -mean_b[ A_b * log P(draw_b) / k_b + entropy_weight * H_b ]

with A_b the reward standardised by a moving mean / variance (the baseline) and H_b the
normalised entropy of the policy (a bonus against collapse onto a few tokens). That is
``credit="sample"``; the default ``credit="token"`` replaces the first term by per-token
advantages (each hidden token's loss against its crop's mean hidden loss, see
:mod:`medmae.masking.credit`), which learns on real scans, and ``max_logit`` bounds the
logits so that the policy cannot collapse. Early in
training a decaying share of the samples is masked at random instead (warm-up); only
the generator's own draws train it (REINFORCE is on-policy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.distributed as dist

from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.credit import RewardTracker, all_reduce_sum, token_advantage
from medmae.masking.loss_guided import ramp
from medmae.masking.mask_generator import MaskGenerator
from medmae.masking.policy import log_policy, normalised_entropy, plackett_luce_log_prob, sample_ranks
from medmae.masking.select import hidden_counts, topk_by_count, uniform


@dataclass
class _Draw:
    """What ``forward`` drew, kept for the ``update`` that follows."""

    ranks: torch.Tensor      # (B, N) long, Plackett-Luce rank of each token
    counts: torch.Tensor     # (B,) long, hidden tokens per sample
    on_policy: torch.Tensor  # (B,) bool, sample masked by the generator (not at random)
    mask: torch.Tensor       # (B, N) bool, the mask returned


class AdversarialMasking(MaskingStrategy):
    """Generator-based adversarial masking trained by policy gradient (see module docstring).

    The generator owns an Adam optimizer; its state travels in ``state_dict`` (extra
    state), as do the baseline statistics, so a resumed run continues identically. Under
    torch.distributed the generator's gradients are summed over ranks and divided by the
    global number of on-policy samples (a mean over every sample of every rank), and the
    baseline statistics are reduced the same way, so all ranks keep identical generators.
    """

    def __init__(self, ratio: float, in_channels: int, patch_size: Sequence[int], width: int = 16,
                 depth: int = 2, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 entropy_weight: float = 0.01, baseline_decay: float = 0.9, warmup_steps: int = 0,
                 min_random_fraction: float = 0.0, grad_clip: float | None = 1.0,
                 credit: Literal["token", "sample"] = "token", max_logit: float | None = None):
        super().__init__(ratio)
        if lr <= 0 or entropy_weight < 0 or not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"need lr > 0, entropy_weight >= 0, baseline_decay in [0, 1); "
                             f"got {lr}, {entropy_weight}, {baseline_decay}")
        if warmup_steps < 0 or not 0.0 <= min_random_fraction <= 1.0:
            raise ValueError(f"need warmup_steps >= 0 and min_random_fraction in [0, 1]; "
                             f"got {warmup_steps}, {min_random_fraction}")
        self.net = MaskGenerator(in_channels, patch_size, width, depth)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, betas=betas)
        self.entropy_weight, self.baseline_decay = float(entropy_weight), float(baseline_decay)
        self.warmup_steps, self.min_random_fraction = int(warmup_steps), float(min_random_fraction)
        if credit not in ("token", "sample"):
            raise ValueError(f"credit must be 'token' or 'sample', got {credit!r}")
        if max_logit is not None and not max_logit > 0:
            raise ValueError(f"max_logit must be > 0 or None, got {max_logit}")
        self.grad_clip, self.credit, self.max_logit = grad_clip, credit, max_logit
        self.rewards = RewardTracker()
        self.register_buffer("reward_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_var", torch.ones((), dtype=torch.float64))
        self.register_buffer("baseline_ready", torch.zeros((), dtype=torch.bool))
        self._draw: _Draw | None = None
        self._synced = False

    def random_fraction(self, step: int) -> float:
        """Share of samples masked at random: 1 -> ``min_random_fraction`` over the warm-up."""
        return ramp(step, 1.0, self.min_random_fraction, self.warmup_steps, "linear")

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B, N) generator logits, in float32 even under autocast, so that
        sampling (in ``forward``) and training (in ``update``) see the same policy; squashed
        into (-max_logit, max_logit) when set (token odds at most exp(2 * max_logit))."""
        with torch.autocast(image.device.type, enabled=False):
            raw = self.net(image.to(self.net.head.weight.dtype))
        if self.max_logit is None:
            return raw
        return self.max_logit * torch.tanh(raw / self.max_logit)  # bounded: no collapse onto a few tokens

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool: a Gumbel-top-k draw, or a random mask for warm-up samples."""
        b, n = ctx.batch_size, ctx.num_tokens
        k = hidden_counts(ctx.valid, self.ratio)
        with torch.no_grad():
            logits = self.logits(ctx.image) if b else torch.zeros(0, n, device=ctx.device)
        ranks = sample_ranks(logits, ctx.valid, generator)
        policy_mask = (ranks < k[:, None]) & ctx.valid
        random_mask = topk_by_count(uniform((b, n), generator, ctx.device), ctx.valid, k)
        at_random = uniform((b,), generator, ctx.device) < self.random_fraction(step)
        mask = torch.where(at_random[:, None], random_mask, policy_mask)
        self._draw = _Draw(ranks, k, ~at_random, mask)
        return mask

    def update(self, ctx: MaskContext, mask: torch.Tensor, token_loss: torch.Tensor, step: int) -> dict[str, float]:
        """One policy-gradient step of the generator on the last draw; call on every rank."""
        draw = self._draw
        if draw is None:
            raise RuntimeError("adversarial masking: update() called without a preceding forward()")
        if draw.mask.shape != mask.shape or not torch.equal(draw.mask, mask):
            raise ValueError("adversarial masking: update() got a different mask than the last forward() drew")
        self._draw = None
        self._sync_parameters()
        hidden = mask.to(token_loss.dtype)
        reward = ((token_loss.detach() * hidden).sum(1) / hidden.sum(1).clamp(min=1)).double()
        finite = torch.isfinite(reward)
        used = draw.on_policy & finite
        reward = torch.where(finite, reward, torch.zeros_like(reward))
        metrics = {"adversarial/random_fraction": self.random_fraction(step)}
        metrics.update(self.rewards.add(reward, used, ~draw.on_policy & finite))
        stats = all_reduce_sum(torch.stack([(reward * used).sum(), (reward ** 2 * used).sum(), used.sum().double()]))
        n_used = float(stats[2])
        with torch.set_grad_enabled(n_used > 0):
            logits = self.logits(ctx.image) if ctx.batch_size else None
        if logits is not None:
            metrics["adversarial/entropy"] = float(normalised_entropy(logits.detach(), ctx.valid).mean())
        if n_used == 0:
            return metrics
        advantage = self._advantage(reward, stats)
        self.optimizer.zero_grad(set_to_none=False)
        if logits is not None:
            if self.credit == "token":
                credit = token_advantage(token_loss, mask, used).float()
                score = (credit * log_policy(logits, ctx.valid)).sum(1) / draw.counts.clamp(min=1)
            else:
                score = advantage.float() * plackett_luce_log_prob(logits, draw.ranks, ctx.valid, draw.counts)
            objective = (score + self.entropy_weight * normalised_entropy(logits, ctx.valid)) * used
            (-objective.sum() / n_used).backward()
        elif self.credit == "token":
            token_advantage(token_loss, mask, used)  # an empty rank still joins the reduction
        self._reduce_gradients()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        metrics["adversarial/baseline"] = float(self.reward_mean)
        return metrics

    def _advantage(self, reward: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """(B,) rewards -> (B,) standardised by the running baseline, which then absorbs this batch."""
        batch_mean = stats[0] / stats[2]
        if not bool(self.baseline_ready):
            self.reward_mean.copy_(batch_mean)
            self.reward_var.copy_((stats[1] / stats[2] - batch_mean ** 2).clamp(min=0))
            self.baseline_ready.fill_(True)
        mean, var = self.reward_mean.clone(), self.reward_var.clone()
        advantage = (reward - mean) / torch.sqrt(var + 1e-8)
        second = stats[1] / stats[2] - 2 * mean * batch_mean + mean ** 2  # E[(R - mean)^2] in this batch
        d = self.baseline_decay
        self.reward_mean.mul_(d).add_((1 - d) * batch_mean)
        self.reward_var.mul_(d).add_((1 - d) * second.clamp(min=0))
        return advantage

    def _sync_parameters(self) -> None:
        """Once per process under torch.distributed: every rank takes rank 0's generator."""
        if self._synced or not (dist.is_available() and dist.is_initialized()):
            return
        for p in self.net.parameters():
            dist.broadcast(p.data, src=0)
        self._synced = True

    def _reduce_gradients(self) -> None:
        """Sum the generator's gradients over ranks (loss already divided by the global count)."""
        for p in self.net.parameters():
            if p.grad is None:  # a rank with no samples still takes part in the reduction
                p.grad = torch.zeros_like(p)
        if not (dist.is_available() and dist.is_initialized()):
            return
        grads = [p.grad for p in self.net.parameters()]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()), "rewards": self.rewards.state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.rewards.load(state.get("rewards"))

