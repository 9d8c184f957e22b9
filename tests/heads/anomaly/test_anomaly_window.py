"""The per-window sums of the anomaly scorer, on one draw of the shipped recipe's model
(norm_crop_loss, input_norm, interp_residual, refiner): only voxels hidden in the draw are
scored, and a lesion in one hidden token changes no voxel's expected value (the crop frame
comes from the visible tokens: tests/models/test_norm_crop_frame.py), only its own error."""

import torch

from medmae.config.schema import ModelConfig
from medmae.heads.anomaly.window import DrawPlan, WindowScorer
from medmae.models.build import build_mae
from medmae.tokens import patchify, token_volume, unpatchify

PATCH, GRID = (8, 8, 8), (4, 4, 4)


def shipped_model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(size="custom", embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=2, patch_size=list(PATCH), norm_pix_loss=False, norm_crop_loss=True,
                      input_norm=True, interp_residual=True, refine_width=8)
    model = build_mae(cfg, (32, 32, 32))
    for p in model.refiner.parameters():  # an active refiner (its output layer starts at 0)
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def window_input(lesion_token: int | None = None):
    """(1, C + 2, 32^3): an image with structure, a body mask leaving 8 tokens out, no units."""
    g = torch.Generator().manual_seed(0)
    i, j, k = torch.meshgrid(*(torch.linspace(-1, 1, 32),) * 3, indexing="ij")
    x = (torch.sin(3 * i) + (j + k > 0).float() + 0.3 * torch.randn(32, 32, 32, generator=g))[None, None]
    if lesion_token is not None:
        tokens = patchify(x, PATCH).clone()
        tokens[:, lesion_token] += 6.0
        x = unpatchify(tokens, PATCH, GRID, 1)
    body = torch.ones(1, 1, 32, 32, 32)
    body[..., :16, :8, :] = 0  # 8 tokens with no body voxel: out of play
    return torch.cat([x, body, torch.zeros_like(body)], 1)


def test_one_draw_scores_its_hidden_voxels_and_a_lesion_moves_no_expectation():
    model = shipped_model()
    plan = DrawPlan(structured=False, draws=3, ratio=0.6, min_fraction=0.5, seed=0, only=(0,))
    clean = window_input()
    valid, masks = WindowScorer(model, plan).masks_for(clean[0, 1] > 0.5, clean[0, 2].long())
    hidden = masks[0] & valid
    assert valid.sum() == 56 and 0 < hidden.sum() < 56
    voxels = token_volume(hidden[None], PATCH, GRID)[0, 0] > 0.5  # X Y Z
    s1, s2, r, n = WindowScorer(model, plan)(clean)[0]
    # only the draw's hidden valid voxels are scored: n is 1 there, 0 on visible and out-of-play ones
    assert torch.equal(n > 0.5, voxels) and torch.all((n == 0) | (n == 1))
    assert torch.all(s1[~voxels] == 0) and torch.all(r[~voxels] == 0) and r[voxels].abs().sum() > 0
    torch.testing.assert_close(s2, s1 * s1)  # one draw: S2 = e^2
    # a +6 lesion in one hidden token: every expected value stays; the error moves at the lesion only
    token = int(torch.nonzero(hidden)[0])
    s1_l, _, r_l, n_l = WindowScorer(model, plan)(window_input(token))[0]
    assert torch.equal(n_l, n) and (r_l - r).abs().max() < 1e-4
    at = token_volume(torch.arange(64)[None] == token, PATCH, GRID)[0, 0] > 0.5
    assert (s1_l - s1)[~at].abs().max() < 1e-4
    torch.testing.assert_close(s1_l[at] - s1[at], torch.full_like(s1[at], 6.0), atol=1e-4, rtol=0)
