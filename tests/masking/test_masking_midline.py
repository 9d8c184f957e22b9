"""Mirror tokens about each crop's own mid-sagittal plane: pairing, tokens without a mirror,
the budget split, the context, the config check, and the anomaly head's hemispheres."""

from __future__ import annotations

import math

import pytest
import torch
from masking_helpers import grid_coords, seeded

from medmae.config.base import ConfigError, load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.base import MaskContext
from medmae.masking.context import build_context
from medmae.masking.hemisphere import hemisphere_mirror, hemisphere_token_masks
from medmae.masking.select import hidden_counts
from medmae.masking.symmetry import mirror_index, mirror_tokens


def test_crop_centre_plane_gives_the_old_mirror():
    for grid, p in [((6, 2, 3), 4), ((5, 2, 2), 8), ((4, 1, 1), 1)]:
        centre = torch.tensor([(grid[0] * p - 1) / 2])
        assert torch.equal(mirror_tokens(grid, p, centre)[0], mirror_index(grid))


def test_off_centre_plane_pairs_mutually_and_drops_the_rest():
    grid, p = (6, 2, 2), 4
    plane = torch.tensor([5.5, 9.5, 1.5, math.nan, 30.0])  # voxels of the crop along axis 0
    m = mirror_tokens(grid, p, plane)
    slab = m.view(5, 6, 4)[:, :, 0] // 4  # mirror slab of each slab (the cell within a slab is kept)
    assert slab[0].tolist() == [2, 1, 0, -1, -1, -1]  # plane between slabs 1 and 2 (5.5 = 1.5 * 4 + 1.5)
    assert slab[1].tolist() == [4, 3, 2, 1, 0, -1]  # plane on slab 2's centre: slab 2 is its own mirror
    assert slab[2].tolist() == [0, -1, -1, -1, -1, -1]
    assert (m[3] == -1).all()  # no plane: no mirror
    assert slab[4].tolist() == [-1, -1, -1, -1, -1, -1]  # plane far right: reflections leave the crop
    n = m.shape[1]
    for row in m:
        has = row >= 0
        assert torch.equal(row[row[has]], torch.arange(n)[has])  # pairs are mutual
    assert torch.equal(m.view(5, 6, 4)[0, 0], torch.arange(8, 12))  # same cell, mirrored slab


def lr_ctx(plane: float, grid=(8, 3, 3), p=4, b=16) -> MaskContext:
    """Units mirrored about ``plane`` (crop voxels): label = |slab - mirror slab| band x cell."""
    c = grid_coords(grid)
    mirror = mirror_tokens(grid, p, torch.full((b,), plane))
    i = c[:, 0]
    partner = torch.where(mirror[0] >= 0, mirror[0] // (grid[1] * grid[2]), i)
    labels = 1 + (i - partner).abs() * 10 + c[:, 1] * 3 + c[:, 2] + 100 * (i > partner)  # left/right units
    n = labels.numel()
    valid = torch.ones(b, n, dtype=torch.bool)
    return MaskContext(grid=grid, image=torch.zeros(b, 1, *(g * p for g in grid)), valid=valid,
                       body=valid.float(), maps={"anatomy": labels.expand(b, -1).clone()}, mirror=mirror)


def test_mirror_mode_about_an_off_centre_plane():
    ctx = lr_ctx(plane=9.5)  # slabs 0..4 are paired, slabs 5..7 have no mirror in the crop
    m = ctx.mirror
    alone = m[0] < 0
    g = seeded(0)
    for _ in range(5):
        mask = AnatomyMasking(0.4, "anatomy", symmetric="mirror", background_label=None)(ctx, 0, g)
        both = mask & mask.gather(1, m.clamp(min=0)) & (m >= 0)
        assert not both.any(), "a token was hidden together with its mirror"
        assert mask.sum(1).eq(hidden_counts(ctx.valid, 0.4)).all()  # the budget is exact
        share = mask[:, alone].float().mean()  # unpaired tokens: their own share of the budget
        assert abs(share - 0.4) < 0.03
        assert not mask[:, ~alone & (m[0] == torch.arange(m.shape[1]))].any()  # slab on the plane


def test_both_mode_about_an_off_centre_plane_hides_pairs():
    ctx = lr_ctx(plane=9.5)
    m = ctx.mirror
    paired = m[0] >= 0
    mask = AnatomyMasking(0.5, "anatomy", symmetric="both", background_label=None)(ctx, 0, seeded(1))
    asym = (mask != mask.gather(1, m.clamp(min=0))) & paired
    assert asym.sum(1).le(2 * 9).all()  # at most the one cut unit pair (9 cells a slab)
    plain = AnatomyMasking(0.5, "anatomy", background_label=None)(ctx, 0, seeded(1))
    assert ((plain != plain.gather(1, m.clamp(min=0))) & paired).sum() > 4 * asym.sum()


def test_context_builds_and_slices_the_mirror():
    b, k = 3, 16
    batch = {"image": torch.zeros(b, 1, k, k, k), "body": torch.ones(b, 1, k, k, k, dtype=torch.uint8),
             "midline": torch.tensor([7.5, 3.5, math.nan])}
    ctx = build_context(batch, (4, 4, 4), True, 0.1, "cpu")
    assert torch.equal(ctx.mirror[0], mirror_index(ctx.grid))
    assert (ctx.mirror[1] >= 0).sum() == 2 * 16 and (ctx.mirror[2] == -1).all()
    assert torch.equal(ctx.select(torch.tensor([2, 0])).mirror, ctx.mirror[[2, 0]])
    del batch["midline"]
    assert build_context(batch, (4, 4, 4), True, 0.1, "cpu").mirror is None


def test_quarter_turns_with_symmetric_masking_are_a_config_error():
    over = ["masking.strategy=anatomy", "masking.anatomy.symmetric=mirror", "data.crop_size=[32,32,32]"]
    with pytest.raises(ConfigError, match=r"data\.augment\.rotate90_prob.*masking\.anatomy\.symmetric"):
        load_config(PretrainConfig, overrides=over + ["data.augment.rotate90_prob=0.5"])
    assert load_config(PretrainConfig, overrides=over + ["data.augment.flip_prob=0.5"])  # flips are fine
    mix = ["masking.strategy=mixture", "data.augment.rotate90_prob=0.5",
           "masking.mixture=[{strategy: random}, {strategy: anatomy, anatomy: {symmetric: both}}]"]
    with pytest.raises(ConfigError, match=r"masking\.mixture\.1\.anatomy\.symmetric"):
        load_config(PretrainConfig, overrides=mix)


def test_hemisphere_masks_split_at_the_plane():
    grid, p = (6, 2, 2), 8
    rows = hemisphere_token_masks(grid, (p, p, p), midline_index=27.5, offset=4)  # crop voxel 23.5
    slab = rows.view(2, 6, 4)[:, :, 0]
    assert slab[0].tolist() == [True, True, True, False, False, False]
    assert slab[1].tolist() == [False, False, False, True, True, True]
    rows = hemisphere_token_masks(grid, p, midline_index=20.0)  # inside slab 2: it straddles the plane
    assert rows.view(2, 6, 4)[:, 2].sum() == 0 and rows[0].sum() == 8 and rows[1].sum() == 12
    mirror = hemisphere_mirror(grid, p, 27.5, offset=4)
    left, right = hemisphere_token_masks(grid, p, 27.5, offset=4)
    assert right[mirror[left]].all() and left[mirror[right]].all()  # left pairs with right


def test_batches_without_a_plane_mirror_about_the_centre_with_one_warning(caplog):
    ctx = lr_ctx(plane=(8 * 4 - 1) / 2)
    centred = AnatomyMasking(0.4, "anatomy", symmetric="mirror", background_label=None)
    want = centred(ctx, 0, seeded(3))
    ctx.mirror = None
    with caplog.at_level("WARNING", logger="medmae.masking.anatomy"):
        got = [centred(ctx, 0, seeded(3)) for _ in range(2)]
    assert torch.equal(got[0], want) and torch.equal(got[1], want)
    assert sum("no 'midline'" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_mirror_masks_match_the_rule():
    dev = torch.device("cuda")
    ctx = lr_ctx(plane=9.5)
    ctx = MaskContext(grid=ctx.grid, image=ctx.image.to(dev), valid=ctx.valid.to(dev), body=ctx.body.to(dev),
                      maps={k: v.to(dev) for k, v in ctx.maps.items()}, mirror=ctx.mirror.to(dev))
    assert torch.equal(mirror_tokens(ctx.grid, 4, torch.full((16,), 9.5, device=dev)), ctx.mirror)
    mask = AnatomyMasking(0.4, "anatomy", symmetric="mirror", background_label=None)(
        ctx, 0, torch.Generator(device=dev).manual_seed(0))
    m = ctx.mirror
    assert mask.device.type == "cuda" and torch.equal(mask.sum(1), hidden_counts(ctx.valid, 0.4))
    assert not (mask & mask.gather(1, m.clamp(min=0)) & (m >= 0)).any()
