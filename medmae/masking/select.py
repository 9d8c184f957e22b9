"""Turning per-token scores into masks with an exact per-sample budget.

Every strategy reduces to "give each token a score, hide the highest-scoring valid
tokens". Structured strategies (blocks, anatomical units) give all tokens of a unit the
same integer priority and add tie-breaking noise in [0, 0.5), so whole units are hidden
in priority order and only the last unit that crosses the budget is cut.

Random numbers come only from the ``torch.Generator`` the caller passes, so a mask is a
deterministic function of (inputs, generator state). Draws happen on the generator's
device and are moved to the tokens' device when the two differ.
"""

from __future__ import annotations

import torch


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn from ``generator``, returned on ``device``."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
    return u.to(device)


def gumbel(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)`` of ``shape`` (finite: U is kept off 0 and 1)."""
    tiny = torch.finfo(dtype).tiny
    u = uniform(shape, generator, device, dtype).clamp(tiny, 1.0 - torch.finfo(dtype).eps)
    return -torch.log(-torch.log(u))


def hidden_counts(valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, N) bool -> (B,) long: round(ratio * n_valid), clamped to [1, n_valid - 1].

    Rounding is half-to-even (like Python's ``round``). Raises when a sample has fewer
    than 2 valid tokens (``build_context`` guarantees at least 2).
    """
    n_valid = valid.sum(1)
    if bool((n_valid < 2).any()):
        bad = torch.nonzero(n_valid < 2).flatten().tolist()
        raise ValueError(f"samples {bad} have fewer than 2 valid tokens; cannot hide >=1 and show >=1")
    k = torch.round(n_valid.double() * ratio).long()
    return torch.minimum(torch.clamp(k, min=1), n_valid - 1)


def rank_tokens(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, N) scores, (B, N) valid -> (B, N) long rank of each token (0 = hidden first).

    Valid tokens come before every invalid token whatever their scores (two stable sorts:
    by score descending, then by validity), NaN scores rank last among valid tokens.
    """
    s = torch.nan_to_num(scores, nan=float("-inf"))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    v_sorted = torch.gather(valid, 1, order)
    order = torch.gather(order, 1, torch.sort((~v_sorted).to(torch.uint8), dim=1, stable=True).indices)
    return invert_permutation(order)


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """(B, N) permutations per row -> (B, N) their inverses (token at each rank <-> rank of each token)."""
    pos = torch.arange(perm.shape[1], device=perm.device).expand_as(perm)
    return torch.empty_like(perm).scatter_(1, perm, pos)


def topk_by_count(scores: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Hide the ``counts[b]`` highest-scoring valid tokens of each sample.

    scores (B, N) any real dtype, valid (B, N) bool, counts (B,) long with
    0 <= counts <= n_valid -> mask (B, N) bool (never True on an invalid token).
    """
    return (rank_tokens(scores, valid) < counts[:, None]) & valid


def topk_mask(scores: torch.Tensor, valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, N) scores -> (B, N) bool mask hiding exactly ``hidden_counts(valid, ratio)`` per sample."""
    return topk_by_count(scores, valid, hidden_counts(valid, ratio))


def with_ties_broken(priority: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, N) integer-valued priorities -> float64 scores with random order inside each level.

    Adds U[0, 0.5) noise, which never reorders two different integer levels.
    """
    noise = uniform(tuple(priority.shape), generator, priority.device, torch.float64)
    return priority.double() + 0.5 * noise
