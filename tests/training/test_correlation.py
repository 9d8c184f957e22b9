"""The hidden-token correlation: 1 for an exact (or affine) reconstruction, 0 for predict-the-mean."""

import pytest
import torch

from medmae.training.mean_predictor import mean_predictor_loss
from medmae.training.correlation import hidden_correlation
from medmae.training.progress import Progress


def _batch():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 10, 8, generator=g) + torch.arange(3.0)[:, None, None] * 5  # per-sample levels
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, ::2] = True
    return target, mask


def test_exact_and_affine_reconstruction_score_one():
    target, mask = _batch()
    assert hidden_correlation(target, target, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert hidden_correlation(3 * target + 2, target, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert hidden_correlation(-target, target, mask).item() == pytest.approx(-1.0, abs=1e-6)


def test_predict_the_mean_scores_zero_although_levels_differ_between_samples():
    target, mask = _batch()
    visible_mean = (target * ~mask[..., None]).sum((1, 2)) / (~mask).sum(1) / target.shape[2]
    pred = visible_mean[:, None, None].expand_as(target).clone()  # what the raw baseline predicts
    assert mean_predictor_loss(target, mask, None, False).item() > 0.5
    assert hidden_correlation(pred, target, mask).item() == 0.0
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    assert abs(hidden_correlation(noise, target, mask).item()) < 0.15


def test_only_hidden_valid_voxels_count():
    target, mask = _batch()
    pred = target.clone()
    pred[~mask] = -pred[~mask]  # visible tokens wrong: ignored
    valid = torch.ones_like(mask)
    valid[:, 0] = False  # hidden but not valid: ignored even though wrong
    pred[:, 0] = 100.0
    assert hidden_correlation(pred, target, mask, valid).item() == pytest.approx(1.0, abs=1e-6)
    nothing = torch.zeros_like(mask)
    assert hidden_correlation(pred, target, nothing).item() == 0.0
    with pytest.raises(ValueError, match="pred, target"):
        hidden_correlation(pred, target[:, :, :4], mask)


def test_progress_line_shows_correlation():
    p = Progress(total_steps=10, start_step=0, crops_per_step=4, clock=lambda: 0.0)
    assert "r 0.63" in p.line(5, loss=0.5, lr=1e-4, mean_pred=1.0, corr=0.634)
    assert "| r " not in p.line(6, loss=0.5, lr=1e-4, mean_pred=1.0)
