"""Loss-guided (HPM) masking: schedule, hard-token selection, token scoring, EMA teacher."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from masking_helpers import PATCH, make_ctx, seeded
from torch import nn

from medmae.masking.loss_guided import LossGuidedMasking, ramp
from medmae.masking.scoring import complementary_token_loss
from medmae.masking.select import hidden_counts, topk_by_count
from medmae.tokens import patchify


class VarianceModel(nn.Module):
    """Fake autoencoder honouring ``model(x, mask, valid).token_loss`` (B, N): the loss of a
    hidden token is ``scale`` * its patch variance; a visible token reports -1 (so a scorer
    that reads a visible pass is caught)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, mask, valid):
        self.calls.append((mask.clone(), valid.clone()))
        var = patchify(x, PATCH).var(-1) * self.scale
        return SimpleNamespace(token_loss=torch.where(mask, var, torch.full_like(var, -1.0)) * valid)


def test_ramp_linear_and_cosine():
    assert ramp(0, 0.0, 0.5, 100, "linear") == 0.0
    assert ramp(50, 0.0, 0.5, 100, "linear") == pytest.approx(0.25)
    assert ramp(500, 0.0, 0.5, 100, "linear") == pytest.approx(0.5)
    assert ramp(25, 0.0, 1.0, 100, "cosine") == pytest.approx(0.5 * (1 - 2 ** -0.5))
    assert ramp(50, 0.2, 1.0, 100, "cosine") == pytest.approx(0.6)
    assert ramp(3, 0.2, 0.7, 0, "linear") == 0.7


def test_alpha_one_hides_the_hardest_tokens():
    ctx = make_ctx()
    mask = LossGuidedMasking(0.6, 1.0, 1.0, 10)(ctx, 0, seeded(0))
    expected = topk_by_count(ctx.token_scores, ctx.valid, hidden_counts(ctx.valid, 0.6))
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_hard_share_follows_the_schedule(schedule):
    ctx = make_ctx()
    strategy = LossGuidedMasking(0.5, 0.0, 0.8, 100, schedule)
    k = hidden_counts(ctx.valid, 0.5)
    g = seeded(0)
    for step in (0, 30, 60, 100, 200):
        alpha = strategy.alpha(step)
        assert alpha == pytest.approx(ramp(step, 0.0, 0.8, 100, schedule))
        mask = strategy(ctx, step, g)
        k_hard = torch.round(k.double() * alpha).long()
        hardest = topk_by_count(ctx.token_scores, ctx.valid, k_hard)
        assert not (hardest & ~mask).any(), "a top-difficulty token was left visible"
        # the rest is random: easy tokens (bottom half by difficulty) are still hidden at a rate > 0
        easy = ctx.valid & ~topk_by_count(ctx.token_scores, ctx.valid, ctx.valid.sum(1) // 2)
        if alpha < 0.8:
            assert (mask & easy).sum() > 0


def test_alpha_zero_is_random_in_mean():
    ctx = make_ctx(b=1, radii=[100.0])
    strategy = LossGuidedMasking(0.5, 0.0, 0.0, 10)
    ctx.token_scores = None  # not needed at alpha 0
    g = seeded(0)
    freq = torch.stack([strategy(ctx, 0, g)[0] for _ in range(300)]).float().mean(0)
    assert float((freq - 0.5).abs().max()) < 0.15


def test_missing_scores_is_a_clear_error():
    ctx = make_ctx()
    ctx.token_scores = None
    with pytest.raises(ValueError, match="token_scores"):
        LossGuidedMasking(0.5, 0.5, 0.5, 10)(ctx, 0, seeded(0))


def test_complementary_scoring_reads_each_token_when_hidden():
    ctx = make_ctx()
    model = VarianceModel()
    scores = complementary_token_loss(model, ctx.image, ctx.valid, seeded(0))
    var = patchify(ctx.image, PATCH).var(-1)
    assert torch.allclose(scores, var * ctx.valid)
    (m1, v1), (m2, v2) = model.calls
    assert torch.equal(m1 ^ m2, ctx.valid) and not (m1 & m2).any()
    assert torch.equal(m1.sum(1), hidden_counts(ctx.valid, 0.5))
    assert not scores.requires_grad


def test_ema_teacher_tracks_and_resumes():
    ctx = make_ctx()
    var = patchify(ctx.image, PATCH).var(-1) * ctx.valid
    model = VarianceModel()
    strategy = LossGuidedMasking(0.5, 0.5, 0.5, 10, ema_decay=0.5)
    assert torch.allclose(strategy.score_tokens(model, ctx.image, ctx.valid, seeded(0)), var)  # copy of scale 1
    with torch.no_grad():
        model.scale.fill_(3.0)
    # scoring (once per micro-batch) leaves the teacher alone ...
    assert torch.allclose(strategy.score_tokens(model, ctx.image, ctx.valid, seeded(0)), var)
    # ... one optimizer step moves it once: 0.5 * 1 + 0.5 * 3
    strategy.after_optimizer_step(model)
    assert torch.allclose(strategy.score_tokens(model, ctx.image, ctx.valid, seeded(0)), 2.0 * var)
    assert not any(k.startswith("_ema") for k in strategy.state_dict())  # only via extra state
    buf = io.BytesIO()
    torch.save(strategy.state_dict(), buf)
    buf.seek(0)
    resumed = LossGuidedMasking(0.5, 0.5, 0.5, 10, ema_decay=0.5)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.allclose(resumed.score_tokens(model, ctx.image, ctx.valid, seeded(0)), 2.0 * var, atol=1e-5)
    for s in (resumed, strategy):
        s.after_optimizer_step(model)
        assert torch.allclose(s.score_tokens(model, ctx.image, ctx.valid, seeded(0)), 2.5 * var, atol=1e-5)
    fresh = LossGuidedMasking(0.5, 0.5, 0.5, 10, ema_decay=0.5)
    assert torch.allclose(fresh.score_tokens(model, ctx.image, ctx.valid, seeded(0)), 3.0 * var)


def test_scores_from_the_real_mae_drive_the_mask():
    """With the real ``medmae.models`` MAE: every valid token gets a finite loss, invalid 0,
    and at alpha 1 the mask is the top of those scores."""
    from medmae.models import MaskedAutoencoder3D

    torch.manual_seed(0)
    model = MaskedAutoencoder3D((8, 8, 8), 2, 1, embed_dim=32, depth=1, num_heads=2,
                                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    ctx = make_ctx(b=3, grid=(4, 4, 4), radii=[100.0, 1.5, 1.2])
    strategy = LossGuidedMasking(0.75, 1.0, 1.0, 10, ema_decay=0.9)
    scores = strategy.score_tokens(model, ctx.image, ctx.valid, seeded(0))
    assert scores.shape == (3, 64) and torch.isfinite(scores).all()
    assert (scores[ctx.valid] > 0).all() and (scores[~ctx.valid] == 0).all()
    ctx.token_scores = scores
    mask = strategy(ctx, 0, seeded(1))
    assert torch.equal(mask, topk_by_count(scores, ctx.valid, hidden_counts(ctx.valid, 0.75)))
    out = model(ctx.image, mask, ctx.valid)
    assert torch.isfinite(out.loss)
