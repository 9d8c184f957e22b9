"""Edge r: hidden patches drawn flat score 0 whatever their level; edges in the right place
and polarity score 1; differences never cross a patch seam."""

import pytest
import torch

from medmae.tokens import patch_differences, patchify
from medmae.training.correlation import hidden_correlation, hidden_gradient_correlation

PATCH = (4, 4, 4)


def _volume():
    """(1, 1, 16, 16, 16): a bright ball on a ramp, plus noise; 64 tokens of 4^3."""
    g = torch.Generator().manual_seed(0)
    ax = torch.arange(16.0)
    x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
    ball = (((x - 7.5) ** 2 + (y - 6) ** 2 + (z - 9) ** 2) < 25).float()
    return (3 * ball + 0.05 * x + 0.1 * torch.randn(16, 16, 16, generator=g))[None, None]


def test_patch_differences_stay_inside_patches():
    tokens = patchify(torch.arange(8.0).reshape(1, 1, 8, 1, 1).expand(1, 1, 8, 2, 2).contiguous(), (4, 2, 2))
    d = patch_differences(tokens, (4, 2, 2))  # x steps of 1 inside each patch, the seam (3 -> 4) never taken
    assert d.shape == (1, 2, 3 * 4 + 4 * 2 + 4 * 2)
    assert torch.equal(d[..., :12], torch.ones(1, 2, 12)) and torch.equal(d[..., 12:], torch.zeros(1, 2, 16))


def test_flat_hidden_patches_score_zero_exact_ones_one():
    target = patchify(_volume(), PATCH)  # 1 64 64
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[:, 1::2] = True
    flat = target.mean(-1, keepdim=True).expand_as(target)  # every level right, no edge drawn
    assert hidden_correlation(flat, target, mask).item() > 0.5  # r credits the levels
    assert hidden_gradient_correlation(flat, target, mask, None, PATCH).item() == 0.0
    assert hidden_gradient_correlation(target, target, mask, None, PATCH).item() == pytest.approx(1.0, abs=1e-6)
    levels = target + torch.randn(1, 64, 1)  # wrong levels, right edges
    assert hidden_gradient_correlation(levels, target, mask, None, PATCH).item() == pytest.approx(1.0, abs=1e-6)
    assert hidden_gradient_correlation(-target, target, mask, None, PATCH).item() == pytest.approx(-1.0, abs=1e-6)
    blurred = torch.nn.functional.avg_pool3d(_volume(), 3, 1, 1, count_include_pad=False)
    r_blur = hidden_gradient_correlation(patchify(blurred, PATCH), target, mask, None, PATCH).item()
    assert 0.3 < r_blur < 0.95  # soft edges in the right place: partial credit
