"""Shared builders for the masking tests.

Imported as ``from masking_helpers import ...`` (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import torch

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.block import BlockMasking
from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking

PATCH = (2, 2, 2)


def grid_coords(grid: tuple[int, int, int]) -> torch.Tensor:
    """(N, 3) long cell (i, j, k) of each token, C order."""
    axes = [torch.arange(g) for g in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def ball_valid(grid: tuple[int, int, int], radii: list[float]) -> torch.Tensor:
    """(B, N) bool: per sample, the tokens within ``radii[b]`` of the grid centre (differing n_valid)."""
    c = grid_coords(grid).float()
    centre = (torch.tensor(grid).float() - 1) / 2
    d = (c - centre).norm(dim=1)
    return torch.stack([d <= r for r in radii])


def boxes_labels(grid: tuple[int, int, int], b: int) -> torch.Tensor:
    """(B, N) long: the grid cut into 2x2x2-token boxes labelled 1.., one box in eight kept as 0."""
    c = grid_coords(grid)
    box = ((c[:, 0] // 2) * 100 + (c[:, 1] // 2) * 10 + c[:, 2] // 2)
    labels = torch.unique(box, return_inverse=True)[1] + 1
    labels[labels % 8 == 0] = 0
    return labels.expand(b, -1).clone()


def make_ctx(b: int = 4, grid: tuple[int, int, int] = (6, 6, 6), radii: list[float] | None = None,
             seed: int = 0) -> MaskContext:
    """A context with an image matching ``grid`` at patch ``PATCH``, validity balls of
    differing sizes, an anatomy map of boxes, tissue/supervoxel maps, and token scores."""
    gen = torch.Generator().manual_seed(seed)
    radii = radii if radii is not None else [10.0, 2.5, 1.8, 3.2][:b] + [10.0] * max(0, b - 4)
    valid = ball_valid(grid, radii)
    n = valid.shape[1]
    image = torch.randn(b, 1, *(g * p for g, p in zip(grid, PATCH)), generator=gen)
    anatomy = boxes_labels(grid, b)
    maps = {"anatomy": anatomy, "tissue": anatomy % 3, "supervoxels": anatomy * 7 + 3}
    return MaskContext(grid=grid, image=image, valid=valid, body=valid.float(), maps=maps,
                       token_scores=torch.rand(b, n, generator=gen))


def all_strategies(ratio: float) -> dict[str, MaskingStrategy]:
    """One instance of every strategy (and a mixture of them) at ``ratio``."""
    out: dict[str, MaskingStrategy] = {
        "random": RandomMasking(ratio),
        "block": BlockMasking(ratio, 1, 3),
        "block_aniso": BlockMasking(ratio, 1, 2, isotropic=False),
        "anatomy": AnatomyMasking(ratio, "anatomy", {3: 2.0}),
        "tissue": AnatomyMasking(ratio, "tissue"),
        "supervoxels": AnatomyMasking(ratio, "supervoxels", background_label=None),
        "mirror": AnatomyMasking(ratio, "anatomy", symmetric="mirror"),
        "both": AnatomyMasking(ratio, "anatomy", symmetric="both"),
        "loss_guided": LossGuidedMasking(ratio, 0.5, 0.5, 10),
        "adversarial": AdversarialMasking(ratio, 1, PATCH, width=4, depth=1),
    }
    out["mixture"] = MixtureMasking([RandomMasking(ratio), BlockMasking(ratio, 1, 2),
                                     AnatomyMasking(ratio, "supervoxels")], [1.0, 1.0, 1.0])
    return out


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
