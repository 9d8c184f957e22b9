"""build_context: validity from the body map, fallbacks, per-token priors, errors."""

from __future__ import annotations

import pytest
import torch

from medmae.masking.context import build_context


def _batch(b=3, size=(8, 8, 8)):
    g = torch.Generator().manual_seed(0)
    body = torch.zeros(b, 1, *size, dtype=torch.uint8)
    body[0, :, :4] = 1            # half of sample 0 (x < 4)
    body[1, :, :, :, :1] = 1      # one voxel thick slab: 1/4 of each token on the z = 0 side
    # sample 2: no body at all (crop in the air)
    anatomy = torch.zeros(b, 1, *size, dtype=torch.int16)
    anatomy[:, :, 4:, 4:] = 5
    anatomy[:, :, 4:, 4:, 4:5] = 7  # minority inside the token: the mode stays 5
    return {"image": torch.randn(b, 2, *size, generator=g), "body": body, "anatomy": anatomy,
            "tissue": body.long() * 2, "case_id": ["a", "b", "c"]}


def test_valid_from_body_fraction_and_fallback():
    ctx = build_context(_batch(), (4, 4, 4), foreground_only=True, min_fraction=0.3, device="cpu")
    assert ctx.grid == (2, 2, 2)
    assert ctx.image.shape == (3, 2, 8, 8, 8)
    # sample 0: tokens with i = 0 are all body
    assert ctx.valid[0].view(2, 2, 2)[0].all() and not ctx.valid[0].view(2, 2, 2)[1].any()
    assert torch.allclose(ctx.body[1].view(2, 2, 2)[:, :, 0], torch.full((2, 2), 0.25))
    # sample 1: body fraction 0.25 < 0.3 everywhere -> no valid token -> falls back to all valid
    assert ctx.valid[1].all()
    assert ctx.valid[2].all()  # no body: fallback
    low = build_context(_batch(), (4, 4, 4), foreground_only=True, min_fraction=0.2, device="cpu")
    assert low.valid[1].view(2, 2, 2)[:, :, 0].all() and not low.valid[1].view(2, 2, 2)[:, :, 1].any()


def test_min_valid_tokens_fallback():
    ctx = build_context(_batch(), (4, 4, 4), True, 0.3, "cpu", min_valid_tokens=5)
    assert ctx.valid.all()  # sample 0 has 4 valid tokens < 5


def test_all_valid_when_not_foreground_only_and_priors():
    batch = _batch()
    ctx = build_context(batch, (4, 4, 4), foreground_only=False, min_fraction=0.3, device="cpu")
    assert ctx.valid.all()
    assert set(ctx.maps) == {"anatomy", "tissue"}
    assert ctx.maps["anatomy"].dtype == torch.long
    assert ctx.maps["anatomy"][0].view(2, 2, 2)[1, 1].tolist() == [5, 5]
    assert ctx.maps["anatomy"][0].view(2, 2, 2)[0].unique().tolist() == [0]
    del batch["body"]
    assert build_context(batch, (4, 4, 4), False, 0.3, "cpu").body.eq(1).all()


def test_errors_name_the_problem():
    batch = _batch()
    with pytest.raises(ValueError, match="not divisible"):
        build_context(batch, (3, 4, 4), True, 0.3, "cpu")
    bad = dict(batch, anatomy=batch["anatomy"][:, :, :4])
    with pytest.raises(ValueError, match="'anatomy' has shape"):
        build_context(bad, (4, 4, 4), True, 0.3, "cpu")
    no_body = {k: v for k, v in batch.items() if k != "body"}
    with pytest.raises(ValueError, match="needs the 'body' map"):
        build_context(no_body, (4, 4, 4), True, 0.3, "cpu")
