"""Every strategy: exact budget per sample, validity respected, seeded determinism."""

from __future__ import annotations

import pytest
import torch
from masking_helpers import all_strategies, make_ctx, seeded

from medmae.masking.select import hidden_counts

NAMES = list(all_strategies(0.5))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ratio", [0.3, 0.75, 0.9])
def test_exact_budget_and_validity(name, ratio):
    ctx = make_ctx()  # n_valid differs per sample: 216, 56, 32, 136
    strategy = all_strategies(ratio)[name]
    for seed in range(3):
        mask = strategy(ctx, 5, seeded(seed))
        assert mask.dtype == torch.bool and mask.shape == ctx.valid.shape
        n_valid = ctx.valid.sum(1)
        expected = torch.tensor([round(ratio * int(n)) for n in n_valid])
        assert torch.equal(mask.sum(1), expected)
        assert torch.equal(hidden_counts(ctx.valid, ratio), expected)
        assert not (mask & ~ctx.valid).any(), "an invalid token was hidden"
        visible = ctx.valid & ~mask
        assert ((visible | mask) == ctx.valid).all(), "invalid tokens must be neither visible nor hidden"
        assert (visible.sum(1) >= 1).all() and (mask.sum(1) >= 1).all()


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism(name):
    ctx = make_ctx()
    a = all_strategies(0.6)[name](ctx, 5, seeded(7))
    b = all_strategies(0.6)[name](ctx, 5, seeded(7))
    c = all_strategies(0.6)[name](ctx, 5, seeded(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    ctx = make_ctx().select(torch.zeros(0, dtype=torch.long))
    assert all_strategies(0.6)[name](ctx, 0, seeded(0)).shape == (0, 216)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_valid_sets(name):
    """Two valid tokens: one hidden, one visible, for every ratio."""
    ctx = make_ctx(b=2)
    ctx.valid[:] = False
    ctx.valid[0, [0, 215]] = True
    ctx.valid[1, [100, 101, 102]] = True
    for ratio in (0.05, 0.95):
        mask = all_strategies(ratio)[name](ctx, 0, seeded(1))
        assert mask.sum(1).tolist() == [1, 1 if ratio < 0.5 else 2]
        assert not (mask & ~ctx.valid).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_contract(name):
    ctx = make_ctx()
    dev = torch.device("cuda")
    ctx = type(ctx)(grid=ctx.grid, image=ctx.image.to(dev), valid=ctx.valid.to(dev), body=ctx.body.to(dev),
                    maps={k: v.to(dev) for k, v in ctx.maps.items()}, token_scores=ctx.token_scores.to(dev))
    strategy = all_strategies(0.75)[name].to(dev)
    mask = strategy(ctx, 5, torch.Generator(device=dev).manual_seed(0))
    assert mask.device.type == "cuda"
    assert torch.equal(mask.sum(1).cpu(), hidden_counts(ctx.valid, 0.75).cpu())
    assert not (mask & ~ctx.valid).any()
