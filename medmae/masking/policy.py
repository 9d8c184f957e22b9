"""Plackett-Luce policy over tokens: Gumbel-top-k sampling and its log-probability.

Sampling k tokens without replacement with probabilities proportional to exp(logit)
(draw one, renormalise over the rest, repeat) is exactly "add Gumbel noise to the logits
and take the top k" (Kool et al. 2019). The log-probability of the ordered draw is
sum_j [ l_(j) - logsumexp_{i >= j} l_(i) ] over the sorted logits, computed here with a
reversed log-cumsum-exp (no cancellation, one pass, every sample at once).
"""

from __future__ import annotations

import torch

from medmae.masking.select import gumbel, invert_permutation, rank_tokens

_ABSENT = -1.0e4  # logit given to invalid tokens: exp() is 0, gradients stay finite


def sample_ranks(logits: torch.Tensor, valid: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, N) logits -> (B, N) long rank of each token in a Plackett-Luce draw over valid tokens.

    Hiding the tokens of rank < k is a Gumbel-top-k sample of k tokens.
    """
    keys = logits.detach().double() + gumbel(tuple(logits.shape), generator, logits.device, torch.float64)
    return rank_tokens(keys, valid)


def plackett_luce_log_prob(logits: torch.Tensor, ranks: torch.Tensor, valid: torch.Tensor,
                           counts: torch.Tensor) -> torch.Tensor:
    """Mean log-probability per drawn token of drawing the tokens of rank < counts, in that order.

    logits (B, N) (with grad), ranks (B, N) from :func:`sample_ranks`, valid (B, N),
    counts (B,) >= 1 -> (B,) = log P(ordered draw) / counts.
    """
    logits = torch.where(valid, logits, torch.full_like(logits, _ABSENT))
    sorted_logits = torch.gather(logits, 1, invert_permutation(ranks))  # token at each rank
    tail = torch.logcumsumexp(sorted_logits.flip(1), 1).flip(1)  # log sum over ranks >= j
    drawn = torch.arange(logits.shape[1], device=logits.device)[None, :] < counts[:, None]
    return ((sorted_logits - tail) * drawn).sum(1) / counts.clamp(min=1)


def log_policy(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, N) log softmax(logits) over valid tokens (the first pick's log-probability)."""
    return torch.log_softmax(torch.where(valid, logits, torch.full_like(logits, _ABSENT)), 1)


def normalised_entropy(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B,) entropy of softmax(logits) over valid tokens / log(n_valid), in [0, 1]."""
    logp = log_policy(logits, valid)
    h = -(logp.exp() * logp * valid).sum(1)
    return h / torch.log(valid.sum(1).clamp(min=2).to(h.dtype))
