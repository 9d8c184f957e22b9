"""Loss-guided masking with ``score_every`` > 1: exact scores only at refresh steps, a light
loss predictor (trained on them) in between; it learns to rank unseen real brain crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from masking_helpers import PATCH, make_ctx, seeded
from test_masking_loss_guided import VarianceModel

from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.loss_predictor import LossPredictor, standardised_log_loss, valid_correlation
from medmae.masking.scoring import complementary_token_loss
from medmae.models import MaskedAutoencoder3D


def test_exact_scores_only_at_refresh_steps_predictor_otherwise():
    ctx = make_ctx()
    model = VarianceModel()
    strategy = LossGuidedMasking(0.5, 0.5, 0.5, 10, score_every=3, in_channels=1, patch_size=PATCH)
    g = seeded(0)
    for step in range(7):
        before = len(model.calls)
        scores = strategy.score_tokens(model, ctx.image, ctx.valid, g, step)
        passes = len(model.calls) - before
        assert passes == (2 if step % 3 == 0 else 0), step
        assert scores.shape == ctx.valid.shape and torch.isfinite(scores).all()
        assert (scores[~ctx.valid] == 0).all()
        metrics = strategy.update(ctx, strategy(ctx, step, g), scores, step)
        assert ("loss_guided/predictor_corr" in metrics) == (step % 3 == 0)
    exact = LossGuidedMasking(0.5, 0.5, 0.5, 10)  # score_every 1: exact every step, no predictor
    assert exact.predictor is None and exact.refreshes(5)
    with pytest.raises(ValueError, match="score_every"):
        LossGuidedMasking(0.5, score_every=0)


def test_predictor_state_round_trips_for_exact_resume():
    ctx = make_ctx()
    a = LossGuidedMasking(0.5, 0.5, 0.5, 10, score_every=2, in_channels=1, patch_size=PATCH)
    a.score_tokens(VarianceModel(), ctx.image, ctx.valid, seeded(0), 0)  # one fit: Adam has state
    b = LossGuidedMasking(0.5, 0.5, 0.5, 10, score_every=2, in_channels=1, patch_size=PATCH)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.score_tokens(None, ctx.image, ctx.valid, seeded(1), 1),
                       b.score_tokens(None, ctx.image, ctx.valid, seeded(1), 1))
    for s in (a, b):
        s.score_tokens(VarianceModel(), ctx.image, ctx.valid, seeded(2), 2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
               if isinstance(x, torch.Tensor))


def test_standardised_log_loss_per_sample():
    valid = torch.tensor([[True, True, True, False]])
    z = standardised_log_loss(torch.tensor([[1.0, 10.0, 100.0, 5.0]]), valid)
    assert z[0, 3] == 0 and z[0, :3].mean().abs() < 1e-5 and z[0, 0] < z[0, 1] < z[0, 2]
    assert valid_correlation(z, z * 2 + 1, valid) == pytest.approx(1.0)


def _mni_crops(n: int, rng: np.random.Generator, size: int = 32) -> torch.Tensor:
    """(n, 1, size^3) random crops of nilearn's MNI152 T1 template (2 mm), z-scored in the head."""
    from nilearn.datasets import load_mni152_template

    vol = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float32)
    head = vol > 0.1 * vol.max()
    vol = (vol - vol[head].mean()) / vol[head].std()
    lo = np.argwhere(head).min(0)
    hi = np.argwhere(head).max(0) - size
    out = []
    for _ in range(n):
        o = [int(rng.integers(a, max(a, b) + 1)) for a, b in zip(lo, hi)]
        out.append(vol[o[0]:o[0] + size, o[1]:o[1] + size, o[2]:o[2] + size])
    return torch.from_numpy(np.stack(out))[:, None]


def test_predictor_learns_to_rank_unseen_real_brain_crops():
    """Exact scores from a tiny MAE (raw-intensity targets) on random MNI152 crops; after
    fitting on 30 batches the predictor ranks 16 crops it has never seen."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mae = MaskedAutoencoder3D((32, 32, 32), (8, 8, 8), 1, embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32,
                              decoder_depth=1, decoder_num_heads=2, norm_pix_loss=False).eval()
    predictor = LossPredictor(1, (8, 8, 8), lr=3e-3)
    g = seeded(0)
    train, test = _mni_crops(120, rng), _mni_crops(16, rng)
    valid = torch.ones(4, 64, dtype=torch.bool)
    for i in range(0, 120, 4):
        scores = complementary_token_loss(mae, train[i:i + 4], valid, g)
        predictor.fit(train[i:i + 4], scores, valid)
    valid = torch.ones(16, 64, dtype=torch.bool)
    exact = standardised_log_loss(complementary_token_loss(mae, test, valid, g), valid)
    corr = valid_correlation(predictor.predict(test, valid), exact, valid)
    print(f"predictor vs exact scores on unseen MNI152 crops: r = {corr:.2f}")
    assert corr > 0.6
