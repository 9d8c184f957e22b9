"""The voxel refiner (``model.refine_width``): it starts as a no-op, no hidden or out-of-play
voxel of the target ever reaches it, it learns, and norm-pix targets are refused with it.
Its effect on real scans (brain and CT boundaries beyond interpolation) is asserted in
tests/training/test_input_norm_real.py."""

import pytest
import torch

from medmae.config.schema import ModelConfig
from medmae.models.build import build_mae
from medmae.models.refiner import VoxelRefiner
from medmae.tokens import token_volume

RECIPE = dict(size="custom", embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2, patch_size=[8, 8, 8], norm_pix_loss=False, norm_crop_loss=True, input_norm=True,
              interp_residual=True)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    mask = torch.rand(2, 64, generator=g) < 0.6
    valid = torch.ones(2, 64, dtype=torch.bool)
    valid[:, :8] = False  # out of play (padding): neither seen nor scored
    mask &= valid
    return x, mask, valid


def _patch_voxels(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N) bool -> (B, 1, 32, 32, 32) bool, each token over its 8^3 patch."""
    return token_volume(tokens, (8, 8, 8), (4, 4, 4)) > 0.5


def _active_refiner(seed=0):
    torch.manual_seed(seed)
    model = build_mae(ModelConfig(**RECIPE, refine_width=8), (32, 32, 32))
    for p in model.refiner.parameters():  # a refiner that does something (its output layer starts at 0)
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def test_a_new_refiner_changes_nothing():
    torch.manual_seed(0)
    plain = build_mae(ModelConfig(**RECIPE), (32, 32, 32))
    refined = build_mae(ModelConfig(**RECIPE, refine_width=8), (32, 32, 32))
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refiner.") for k in missing)
    x, mask, valid = _inputs()
    assert torch.equal(plain(x, mask, valid).pred, refined(x, mask, valid).pred)


def test_hidden_and_out_of_play_voxels_never_reach_it():
    model = _active_refiner()
    x, mask, valid = _inputs(1)
    with torch.no_grad():
        ref = model(x, mask, valid).pred
        # rescale and shift the hidden voxels (the crop frame comes from the visible ones) and
        # overwrite the out-of-play ones: no prediction may change
        y = x.clone()
        hidden = _patch_voxels(mask)
        y[hidden] = 3 * y[hidden] + 5
        y[~_patch_voxels(valid)] = 50.0
        assert not torch.equal(x, y)
        out = model(y, mask, valid).pred
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()
    # the visible voxels do reach it (not a constant offset: the crop frame of the visible
    # tokens, input_norm and norm_crop_loss, absorbs that)
    with torch.no_grad():
        z = x.clone()
        z[_patch_voxels(valid & ~mask)] = z[_patch_voxels(valid & ~mask)].abs()
        assert not torch.allclose(model(z, mask, valid).pred[mask], ref[mask], atol=1e-3)


def test_it_learns_and_norm_pix_is_refused():
    torch.manual_seed(0)
    model = build_mae(ModelConfig(**RECIPE, refine_width=4), (32, 32, 32))
    x, mask, valid = _inputs(2)
    model(x, mask, valid).loss.backward()
    assert model.refiner.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="refine_width needs model.norm_pix_loss: false"):
        ModelConfig(**{**RECIPE, "interp_residual": False, "norm_pix_loss": True}, refine_width=8)
    with pytest.raises(ValueError, match="width 0"):
        VoxelRefiner(1, 0)
