"""``model.norm_crop_loss``: the crop frame (mean, std) that maps a reconstruction back to
intensities comes from the visible tokens only, in training (targets) and in scoring
(``reconstruct``). A +6 "lesion" in one hidden token moves no voxel's expected value, with
and without the voxel refiner and the interpolation residual; with raw targets nothing
changes either, and the raw path is the identity it always was. The scoring side (the
anomaly window sums) is tested in tests/heads/anomaly/test_anomaly_window.py."""

import numpy as np
import pytest
import torch

from medmae.config.schema import ModelConfig
from medmae.models.build import build_mae
from medmae.tokens import patchify, token_volume, unpatchify

PATCH, GRID = (8, 8, 8), (4, 4, 4)
RECIPE = dict(size="custom", embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2, patch_size=list(PATCH), norm_pix_loss=False, input_norm=True)


def build(norm_crop: bool, refine: int, interp: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = build_mae(ModelConfig(**RECIPE, norm_crop_loss=norm_crop, refine_width=refine,
                                  interp_residual=interp), (32, 32, 32))
    if model.refiner is not None:  # a refiner that does something (its output layer starts at 0)
        for p in model.refiner.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def inputs(seed: int = 0):
    """x (1, 1, 32^3) with structure, valid (1, 64) with 8 out-of-play tokens, a 60% mask,
    and one hidden token to put a lesion in."""
    g = torch.Generator().manual_seed(seed)
    i, j, k = torch.meshgrid(*(torch.linspace(-1, 1, 32),) * 3, indexing="ij")
    x = (torch.sin(3 * i) + (j + k > 0).float() + 0.3 * torch.randn(32, 32, 32, generator=g))[None, None]
    valid = torch.ones(1, 64, dtype=torch.bool)
    valid[0, :8] = False
    order = torch.randperm(56, generator=g) + 8
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[0, order[:34]] = True
    return x, valid, mask, int(order[0])


def with_lesion(x: torch.Tensor, token: int, value: float = 6.0) -> torch.Tensor:
    tokens = patchify(x, PATCH).clone()
    tokens[:, token] += value
    return unpatchify(tokens, PATCH, GRID, 1)


def expected(model, x, valid, mask) -> torch.Tensor:
    """The expected value at every voxel, in x's intensity units (as the anomaly head maps it)."""
    with torch.no_grad():
        return model.reconstruct(model(x, mask, valid).pred, x, mask, valid, paste=False)


@pytest.mark.parametrize("norm_crop", [True, False], ids=["norm_crop", "raw"])
@pytest.mark.parametrize("refine,interp", [(0, False), (0, True), (8, False), (8, True)],
                         ids=["plain", "interp", "refiner", "refiner+interp"])
def test_a_lesion_in_one_hidden_token_moves_no_expected_value(norm_crop, refine, interp):
    model = build(norm_crop, refine, interp)
    x, valid, mask, token = inputs()
    lesioned = with_lesion(x, token)
    base, moved = expected(model, x, valid, mask), expected(model, lesioned, valid, mask)
    assert (base - moved).abs().max() < 1e-4, float((base - moved).abs().max())
    # the lesion is in the target (what the loss and the anomaly map compare against)
    with torch.no_grad():
        t0, t1 = model(x, mask, valid).target, model(lesioned, mask, valid).target
    changed = (t1 - t0).abs().amax(-1)[0] > 1e-3
    assert changed.tolist() == [i == token for i in range(64)]
    # ... and the visible voxels do set the expectation
    shown = int(torch.nonzero(valid[0] & ~mask[0])[0])
    assert (expected(model, with_lesion(x, shown), valid, mask) - base).abs().max() > 1e-2


def test_the_frame_is_the_visible_tokens_statistics():
    model = build(True, 0, False)
    x, valid, mask, _ = inputs(1)
    x = x * 0.1 + 0.5  # CT-like scale
    seen = valid & ~mask
    target = model.patch_target(x, valid, mask)
    with torch.no_grad():
        assert torch.equal(model(x, mask, valid).target, target)  # forward and patch_target agree
    t = target[0][seen[0]]
    assert abs(float(t.mean())) < 1e-4 and float(t.std(correction=0)) == pytest.approx(1.0, abs=1e-3)
    assert float(target[0][mask[0]].std()) != pytest.approx(1.0, abs=1e-2)  # hidden ones are not the frame
    # reconstruct inverts it, hidden tokens included, and pastes x on the visible ones
    back = model.reconstruct(target, x, mask, valid)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
    vox = token_volume(seen, PATCH, GRID) > 0.5
    assert torch.equal(back[vox], x[vox])


def test_raw_targets_are_the_voxels_themselves():
    model = build(False, 8, True)
    x, valid, mask, _ = inputs(2)
    assert torch.equal(model.patch_target(x, valid, mask), patchify(x, PATCH))
    with torch.no_grad():
        out = model(x, mask, valid)
    assert torch.equal(out.target, patchify(x, PATCH))
    assert torch.equal(model.reconstruct(out.pred, x, mask, valid, paste=False), unpatchify(out.pred, PATCH, GRID, 1))
    assert torch.equal(model.reconstruct(out.pred), unpatchify(out.pred, PATCH, GRID, 1))


def test_on_a_real_brain_crop_a_lesion_moves_no_expected_value():
    """The shipped recipe's frame on the real T1c brain (tests/data): a +6 SD "lesion" in one
    hidden patch changes no voxel's expected value, while the error map shows it."""
    from pathlib import Path

    from medmae.io.read import read_volume

    vol = read_volume(Path(__file__).resolve().parents[1] / "data" / "brain1_t1c.nrrd")
    a = np.asarray(vol.array, np.float32)
    crop = torch.from_numpy(a[96:160, 96:160, 4:20])[None, None]  # 50 x 50 x 104 mm of the brain's centre
    crop = torch.nn.functional.interpolate(crop, size=(32, 32, 32), mode="trilinear")  # a 32^3 window
    x = (crop - crop.mean()) / crop.std()
    _, valid, mask, token = inputs()
    model = build(True, 8, True)
    lesioned = with_lesion(x, token, 6.0)
    base, moved = expected(model, x, valid, mask), expected(model, lesioned, valid, mask)
    assert (base - moved).abs().max() < 1e-4
    err = (lesioned - moved).abs() - (x - base).abs()
    at = token_volume(torch.arange(64)[None] == token, PATCH, GRID) > 0.5
    assert err[at].mean() > 3 and err[~at].abs().max() < 1e-4
