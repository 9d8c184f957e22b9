"""Anatomy masking: whole units, label weights, left-right symmetry semantics."""

from __future__ import annotations

import pytest
import torch
from masking_helpers import boxes_labels, grid_coords, make_ctx, seeded

from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.base import MaskContext
from medmae.masking.symmetry import mirror_index
from medmae.masking.units import unit_priority


def unit_states(mask: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor,
                skip: int | None = 0) -> list[tuple[int, int, int]]:
    """Per sample, (fully hidden, partially hidden, fully visible) units over valid tokens."""
    out = []
    for b in range(mask.shape[0]):
        full = part = none = 0
        for label in labels[b][valid[b]].unique().tolist():
            if label == skip:
                continue
            sel = valid[b] & (labels[b] == label)
            h, s = int(mask[b, sel].sum()), int(sel.sum())
            full, part, none = full + (h == s), part + (0 < h < s), none + (h == 0)
        out.append((full, part, none))
    return out


def partial_units(mask, valid, labels, skip: int | None = 0) -> list[int]:
    return [p for _, p, _ in unit_states(mask, valid, labels, skip)]


@pytest.mark.parametrize("source,background", [("anatomy", 0), ("tissue", 0), ("supervoxels", None)])
@pytest.mark.parametrize("ratio", [0.3, 0.75])
def test_whole_units_hidden(source, background, ratio):
    ctx = make_ctx()
    strategy = AnatomyMasking(ratio, source, background_label=background)
    g = seeded(0)
    full = part = none = 0
    for _ in range(10):
        states = unit_states(strategy(ctx, 0, g), ctx.valid, ctx.maps[source], background)
        assert max(p for _, p, _ in states) <= 1, "more than one partially hidden unit in a sample"
        full += sum(s[0] for s in states)
        part += sum(s[1] for s in states)
        none += sum(s[2] for s in states)
    assert full > 0 and none > 0
    if source != "tissue":  # tissue has only 2 classes here; boxes give ~10-27 units per sample
        assert (full + none) / (full + part + none) > 0.85


def test_units_differ_between_draws_and_background_is_spread():
    ctx = make_ctx(b=1, radii=[100.0])
    labels = ctx.maps["anatomy"][0]
    strategy = AnatomyMasking(0.5, "anatomy")
    g = seeded(0)
    hidden_sets = {tuple(torch.nonzero(strategy(ctx, 0, g)[0] & (labels > 0)).flatten().tolist()) for _ in range(20)}
    assert len(hidden_sets) > 15
    bg = labels == 0
    freq = torch.stack([strategy(ctx, 0, g)[0] for _ in range(200)]).float().mean(0)
    assert 0.3 < float(freq[bg].mean()) < 0.7  # background singletons fill the budget like random masking


def test_weighted_order_matches_plackett_luce_first_draw():
    """P(unit u is hidden first) = w_u / sum(w): label 3 has weight 4, 26 others weight 1."""
    labels = boxes_labels((6, 6, 6), 1)[0]
    labels = torch.where(labels == 0, 100 + torch.arange(216), labels)  # no background: 27 units
    n_units = int(labels.unique().numel())
    b = 3000
    prio, coin = unit_priority(labels.expand(b, -1), seeded(0), {3: 4.0}, background_label=None)
    first = labels[prio.argmax(1)]
    p3 = float((first == 3).float().mean())
    expected = 4.0 / (n_units - 1 + 4.0)
    assert abs(p3 - expected) < 4 * (expected * (1 - expected) / b) ** 0.5, (p3, expected)
    # one priority and one coin per unit
    for label in (1, 3, 5):
        sel = labels == label
        assert (prio[:, sel] == prio[:, sel][:, :1]).all() and (coin[:, sel] == coin[:, sel][:, :1]).all()
    assert 0.45 < float(coin[:, labels == 1][:, 0].float().mean()) < 0.55


def test_label_weights_shift_frequencies():
    ctx = make_ctx(b=16, radii=[100.0] * 16)
    labels = ctx.maps["anatomy"]
    size = int((labels[0] == 2).sum())
    assert size == int((labels[0] == 3).sum()) == int((labels[0] == 4).sum())

    def freq(weights):
        g = seeded(0)
        m = torch.cat([AnatomyMasking(0.3, "anatomy", weights)(ctx, 0, g) for _ in range(10)])
        return [float(m[:, labels[0] == l].float().mean()) for l in (2, 3, 4)]

    plain = freq({})
    up = freq({3: 4.0})
    down = freq({3: 0.25})
    assert up[1] > plain[1] + 0.2 and up[1] > 1.5 * up[0]
    assert down[1] < plain[1] - 0.1 and down[1] < 0.6 * down[2]


def test_missing_prior_is_a_clear_error():
    ctx = make_ctx()
    del ctx.maps["supervoxels"]
    with pytest.raises(ValueError, match="add 'supervoxels' to data.priors"):
        AnatomyMasking(0.5, "supervoxels")(ctx, 0, seeded(0))


def mirrored_ctx(grid=(6, 4, 4), b=8, midline=False) -> MaskContext:
    """Left structures 1..4 (i < gx/2) mirrored by right structures 11..14; with ``midline``,
    the two central slabs form one unit (9) that is its own mirror."""
    c = grid_coords(grid)
    i, j, k = c[:, 0], c[:, 1], c[:, 2]
    base = 1 + (j // 2) * 2 + (k // 2)
    labels = torch.where(2 * i < grid[0] - 1, base, base + 10)
    labels = torch.where(2 * i == grid[0] - 1, torch.zeros_like(labels), labels)
    if midline:
        labels = torch.where((i == grid[0] // 2) | (i == grid[0] // 2 - 1), torch.full_like(labels, 9), labels)
    n = labels.numel()
    valid = torch.ones(b, n, dtype=torch.bool)
    return MaskContext(grid=grid, image=torch.zeros(b, 1, *grid), valid=valid, body=valid.float(),
                       maps={"anatomy": labels.expand(b, -1).clone()})


def test_mirror_index_flips_axis_zero():
    m = mirror_index((3, 2, 2)).view(3, 2, 2)
    cells = torch.arange(12).view(3, 2, 2)
    assert torch.equal(m[0], cells[2]) and torch.equal(m[1], cells[1])
    assert torch.equal(mirror_index((3, 2, 2))[mirror_index((3, 2, 2))], torch.arange(12))


def test_mirror_mode_keeps_every_mirror_visible():
    ctx = mirrored_ctx(midline=True)
    mirror = mirror_index(ctx.grid)
    g = seeded(0)
    left_hidden = 0
    for _ in range(10):
        mask = AnatomyMasking(0.4, "anatomy", symmetric="mirror")(ctx, 0, g)
        assert not (mask & mask[:, mirror]).any(), "a token and its mirror were both hidden"
        assert max(partial_units(mask, ctx.valid, ctx.maps["anatomy"])) <= 2  # the cut unit, the midline half
        mid = ctx.maps["anatomy"][0] == 9
        left = grid_coords(ctx.grid)[:, 0] < 3
        for b in range(mask.shape[0]):  # the midline unit: at most one side of it is hidden
            hl, hr = bool(mask[b, mid & left].any()), bool(mask[b, mid & ~left].any())
            assert not (hl and hr)
            left_hidden += hl
    assert 5 < left_hidden < 75  # the side is a coin flip per unit


def test_mirror_mode_beyond_half_hides_pairs_only_for_the_excess():
    ctx = mirrored_ctx()
    mirror = mirror_index(ctx.grid)
    mask = AnatomyMasking(0.75, "anatomy", symmetric="mirror")(ctx, 0, seeded(0))
    k, n = 72, 96
    assert mask.sum(1).eq(k).all()
    assert (mask & mask[:, mirror]).sum(1).eq(2 * (k - n // 2)).all()


def test_mirror_mode_odd_grid_spares_the_midplane():
    ctx = mirrored_ctx(grid=(5, 4, 4))
    i = grid_coords(ctx.grid)[:, 0]
    g = seeded(0)
    for _ in range(5):
        mask = AnatomyMasking(0.3, "anatomy", symmetric="mirror", background_label=None)(ctx, 0, g)
        assert not mask[:, i == 2].any()
        assert not (mask & mask[:, mirror_index(ctx.grid)]).any()


def test_both_mode_hides_mirror_pairs():
    ctx = mirrored_ctx()
    mirror = mirror_index(ctx.grid)
    labels = ctx.maps["anatomy"][0]
    g = seeded(0)
    for _ in range(10):
        mask = AnatomyMasking(0.4, "anatomy", symmetric="both")(ctx, 0, g)
        for b in range(mask.shape[0]):
            asym = mask[b] != mask[b, mirror]
            cut = (labels[asym] % 10).unique()
            assert cut.numel() <= 1, "only the unit pair cut by the budget may be asymmetric"
    plain = AnatomyMasking(0.4, "anatomy")(ctx, 0, seeded(1))
    assert (plain != plain[:, mirror]).sum() > (mask != mask[:, mirror]).sum()
