"""Budgets, ranking and top-k selection; random masking's coverage."""

from __future__ import annotations

import pytest
import torch
from masking_helpers import make_ctx, seeded

from medmae.masking.random import RandomMasking
from medmae.masking.select import hidden_counts, rank_tokens, topk_by_count, topk_mask, with_ties_broken


def test_hidden_counts_round_and_clamp():
    valid = torch.zeros(5, 10, dtype=torch.bool)
    for b, n in enumerate([10, 4, 3, 2, 7]):
        valid[b, :n] = True
    assert hidden_counts(valid, 0.75).tolist() == [8, 3, 2, 1, 5]  # 7.5 -> 8, 3, 2.25 -> 2, 1.5 -> 1 (clamp), 5.25
    assert hidden_counts(valid, 0.01).tolist() == [1, 1, 1, 1, 1]
    assert hidden_counts(valid, 0.99).tolist() == [9, 3, 2, 1, 6]


def test_hidden_counts_rejects_fewer_than_two_valid():
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, 1:] = False
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        hidden_counts(valid, 0.5)


def test_topk_hides_highest_valid_scores():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    valid = torch.tensor([[False, True, True, True, True, True]])
    assert topk_mask(scores, valid, 0.4).tolist() == [[False, True, True, False, False, False]]


def test_rank_puts_valid_before_invalid_whatever_the_score():
    scores = torch.tensor([[float("inf"), float("-inf"), float("nan"), 1.0, float("inf")]])
    valid = torch.tensor([[False, True, True, True, False]])
    ranks = rank_tokens(scores, valid)[0].tolist()
    assert sorted(ranks[i] for i in (1, 2, 3)) == [0, 1, 2]
    assert ranks[3] == 0  # finite beats -inf and NaN
    assert topk_by_count(scores, valid, torch.tensor([3])).tolist() == [[False, True, True, True, False]]


def test_ties_broken_within_levels_only():
    prio = torch.tensor([[3, 3, 3, 1, 1, 2, 2, 2, 0]])
    scores = with_ties_broken(prio, seeded(0))
    order = torch.argsort(scores[0], descending=True)
    assert prio[0, order].tolist() == [3, 3, 3, 2, 2, 2, 1, 1, 0]


def test_random_coverage_is_uniform():
    """Every valid token is hidden with frequency ~ ratio (chi-square over tokens)."""
    ctx = make_ctx(b=4)
    strategy, ratio, draws = RandomMasking(0.75), 0.75, 400
    g = seeded(3)
    counts = torch.zeros_like(ctx.valid, dtype=torch.float64)
    for _ in range(draws):
        counts += strategy(ctx, 0, g)
    for b in range(4):
        v = ctx.valid[b]
        k = int(hidden_counts(ctx.valid, ratio)[b])
        p = k / int(v.sum())  # exact hiding probability per token
        c = counts[b, v]
        chi2 = float(((c - draws * p) ** 2 / (draws * p * (1 - p))).sum())
        dof = int(v.sum()) - 1
        # chi-square with dof degrees of freedom: mean dof, sd sqrt(2 dof); 5 sd is far out
        assert chi2 < dof + 5 * (2 * dof) ** 0.5, (b, chi2, dof)
        assert c.min() > 0 and c.max() < draws
        assert counts[b, ~v].sum() == 0
