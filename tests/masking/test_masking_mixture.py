"""Mixture masking: per-sample choice by weight, routing of forward/update to each strategy."""

from __future__ import annotations

import pytest
import torch
from masking_helpers import PATCH, make_ctx, seeded

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking
from medmae.masking.select import hidden_counts


def test_per_sample_choice_respects_weights():
    """Ratios 0.2 / 0.5 / 0.8 make each sample's strategy readable from its hidden count."""
    ctx = make_ctx(b=400, grid=(4, 4, 4), radii=[100.0] * 400)
    mix = MixtureMasking([RandomMasking(0.2), RandomMasking(0.5), RandomMasking(0.8)], [1.0, 3.0, 6.0])
    g = seeded(0)
    counts = torch.cat([mix(ctx, 0, g).sum(1) for _ in range(4)])  # 1600 samples
    k = [int(hidden_counts(ctx.valid[:1], r)) for r in (0.2, 0.5, 0.8)]
    share = torch.tensor([float((counts == c).float().mean()) for c in k])
    assert float(share.sum()) == pytest.approx(1.0)
    assert torch.allclose(share, torch.tensor([0.1, 0.3, 0.6]), atol=0.04), share
    one_batch = mix(ctx, 0, seeded(3)).sum(1).unique()
    assert one_batch.numel() > 1  # one batch mixes strategies


def test_zero_weight_is_never_chosen():
    ctx = make_ctx(b=8, radii=[100.0] * 8)
    mix = MixtureMasking([RandomMasking(0.2), RandomMasking(0.8)], [0.0, 1.0])
    assert (mix(ctx, 0, seeded(0)).sum(1) == int(hidden_counts(ctx.valid[:1], 0.8))).all()


def test_scores_and_updates_are_routed():
    ctx = make_ctx(b=8, radii=[100.0] * 8)
    adv = AdversarialMasking(0.5, 1, PATCH, width=4, depth=1, lr=0.1)
    lg = LossGuidedMasking(0.5, 1.0, 1.0, 10)
    mix = MixtureMasking([adv, lg], [1.0, 1.0])
    assert mix.needs_scores and not MixtureMasking([RandomMasking(0.5)], [1.0]).needs_scores
    g = seeded(0)
    mask = mix(ctx, 0, g)
    choice = mix._choice
    adv_rows = torch.nonzero(choice == 0).flatten()
    assert 0 < adv_rows.numel() < 8
    assert adv._draw.mask.shape[0] == adv_rows.numel()  # the adversarial strategy saw only its samples
    assert torch.equal(adv._draw.mask, mask[adv_rows])
    lg_rows = choice == 1  # loss-guided at alpha 1: its rows hide exactly the hardest tokens
    top = torch.argsort(ctx.token_scores, 1, descending=True)[:, :108]
    assert torch.equal(mask[lg_rows].sum(1), torch.full((int(lg_rows.sum()),), 108))
    assert torch.gather(mask, 1, top)[lg_rows].all()
    before = adv.net.head.weight.clone()
    metrics = mix.update(ctx, mask, torch.rand(8, 216, generator=g), 0)
    assert "mixture0/adversarial/reward" in metrics and metrics["mixture0/share"] == adv_rows.numel() / 8
    assert not torch.equal(before, adv.net.head.weight)


def test_strategy_without_samples_still_updates_consistently():
    ctx = make_ctx(b=2, radii=[100.0] * 2)
    adv = AdversarialMasking(0.5, 1, PATCH, width=4, depth=1)
    mix = MixtureMasking([RandomMasking(0.5), adv], [1.0, 0.0])
    mask = mix(ctx, 0, seeded(0))
    assert adv._draw.mask.shape == (0, 216)
    assert mix.update(ctx, mask, torch.rand(2, 216), 0)["mixture1/share"] == 0.0


def test_bad_weights_rejected():
    with pytest.raises(ValueError, match="one weight per strategy"):
        MixtureMasking([RandomMasking(0.5)], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive sum"):
        MixtureMasking([RandomMasking(0.5)], [0.0])
