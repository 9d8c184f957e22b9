"""Block masking: hidden tokens come in spatially clustered cuboids."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from masking_helpers import make_ctx, seeded

from medmae.masking.block import BlockMasking
from medmae.masking.random import RandomMasking


def hidden_neighbours(mask: torch.Tensor, grid) -> float:
    """Mean number of hidden 6-neighbours of a hidden token."""
    m = mask.float().view(-1, 1, *grid)
    kernel = torch.zeros(1, 1, 3, 3, 3)
    kernel[0, 0, 1, 1, [0, 2]] = kernel[0, 0, 1, [0, 2], 1] = kernel[0, 0, [0, 2], 1, 1] = 1
    n = F.conv3d(m, kernel, padding=1)
    return float((n * m).sum() / m.sum())


def test_blocks_are_clustered():
    grid = (8, 8, 8)
    ctx = make_ctx(b=8, grid=grid, radii=[100.0] * 8)
    g = seeded(0)
    block = torch.cat([BlockMasking(0.3, 2, 3)(ctx, 0, g) for _ in range(5)])
    rand = torch.cat([RandomMasking(0.3)(ctx, 0, g) for _ in range(5)])
    nb_block, nb_rand = hidden_neighbours(block, grid), hidden_neighbours(rand, grid)
    assert nb_rand < 1.9  # about 6 * 0.3 minus the faces
    assert nb_block > 1.8 * nb_rand, (nb_block, nb_rand)


def test_single_token_blocks_are_random_masking():
    grid = (8, 8, 8)
    ctx = make_ctx(b=8, grid=grid, radii=[100.0] * 8)
    mask = torch.cat([BlockMasking(0.3, 1, 1)(ctx, 0, seeded(s)) for s in range(5)])
    assert hidden_neighbours(mask, grid) < 2.2


def test_blocks_stay_inside_the_body():
    """Blocks are centred on valid tokens, so masking a small body is still clustered."""
    grid = (8, 8, 8)
    ctx = make_ctx(b=8, grid=grid, radii=[2.6] * 8)
    g = seeded(1)
    block = torch.cat([BlockMasking(0.4, 2, 2)(ctx, 0, g) for _ in range(5)])
    rand = torch.cat([RandomMasking(0.4)(ctx, 0, g) for _ in range(5)])
    assert hidden_neighbours(block, grid) > 1.4 * hidden_neighbours(rand, grid)


def test_one_block_covers_everything_when_edges_exceed_the_grid():
    ctx = make_ctx(b=2, grid=(3, 3, 3), radii=[100.0, 100.0])
    mask = BlockMasking(0.5, 5, 5)(ctx, 0, seeded(0))
    assert mask.sum(1).tolist() == [14, 14]


def test_anisotropic_sizes_listed():
    s = BlockMasking(0.5, 1, 2, isotropic=False)
    assert len(s.sizes) == 8 and (1, 2, 1) in s.sizes
    assert BlockMasking(0.5, 2, 4).sizes == [(2, 2, 2), (3, 3, 3), (4, 4, 4)]


def test_trailing_box_max_matches_max_pool():
    from medmae.masking.block import trailing_box_max

    v = torch.rand(3, 5, 6, 7, dtype=torch.float64, generator=seeded(0))
    for e in [(1, 1, 1), (2, 3, 1), (3, 3, 3), (8, 2, 5)]:
        padded = F.pad(v[:, None], (e[2] - 1, 0, e[1] - 1, 0, e[0] - 1, 0))
        assert torch.equal(trailing_box_max(v, e), F.max_pool3d(padded, e, 1)[:, 0]), e
