"""Block (cube) masking: hide random cuboids of tokens until the budget is met."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.select import topk_mask, with_ties_broken


class BlockMasking(MaskingStrategy):
    """Hide random blocks of tokens, one after another, until round(ratio * n_valid).

    Each sample draws M blocks, centred on random valid tokens, with edges (in tokens)
    uniform in [min_edge, max_edge] (the same on every axis when ``isotropic``, drawn per
    axis otherwise). Block m has priority M - m; a token takes the highest priority of the
    blocks covering it, so hiding by priority is "block 0, then what block 1 adds, ...".
    The block that crosses the budget is cut at random tokens; if all blocks together
    cover less than the budget, random uncovered tokens top it up. Vectorised: one
    separable box maximum per block size paints every block of that size at once.
    """

    def __init__(self, ratio: float, min_edge: int = 1, max_edge: int = 3, isotropic: bool = True):
        super().__init__(ratio)
        if not 1 <= min_edge <= max_edge:
            raise ValueError(f"block edges need 1 <= min_edge <= max_edge, got {min_edge}, {max_edge}")
        self.min_edge, self.max_edge, self.isotropic = int(min_edge), int(max_edge), bool(isotropic)
        edges = range(self.min_edge, self.max_edge + 1)
        self.sizes = [(e, e, e) for e in edges] if isotropic else list(itertools.product(edges, repeat=3))
        self.register_buffer("edges", torch.tensor(self.sizes), persistent=False)  # S 3, moves with .to()
        self._mean_volume = sum(math.prod(s) for s in self.sizes) / len(self.sizes)

    def num_blocks(self, num_tokens: int) -> int:
        """Blocks drawn per sample: about three grid volumes of blocks, so that their union
        nearly always exceeds the budget and top-up by single tokens is rare."""
        return math.ceil(3 * num_tokens / self._mean_volume) + 4

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool."""
        b, n, dev = ctx.batch_size, ctx.num_tokens, ctx.device
        if b == 0:
            return torch.zeros(0, n, dtype=torch.bool, device=dev)
        m = self.num_blocks(n)
        gdev = generator.device
        centres = torch.multinomial(ctx.valid.float().to(gdev), m, replacement=True, generator=generator)
        size_idx = torch.randint(len(self.sizes), (b, m), generator=generator, device=gdev)
        centres, size_idx = centres.to(dev), size_idx.to(dev)
        priority = self._paint(ctx.grid, centres, size_idx)
        return topk_mask(with_ties_broken(priority, generator), ctx.valid, self.ratio)

    def _paint(self, grid: tuple[int, int, int], centres: torch.Tensor, size_idx: torch.Tensor) -> torch.Tensor:
        """centres (B, M) token index, size_idx (B, M) -> (B, N) float64 highest covering priority (0 = none)."""
        b, m = centres.shape
        dev = centres.device
        edges = self.edges.to(dev)[size_idx].unbind(-1)  # 3 x (B, M)
        cell = torch.unravel_index(centres, grid)  # 3 x (B, M)
        cx, cy, cz = (torch.minimum((c - (e - 1) // 2).clamp(min=0), (g - e).clamp(min=0))
                      for c, e, g in zip(cell, edges, grid))  # corner of each block
        flat = (cx * grid[1] + cy) * grid[2] + cz
        prio = (m - torch.arange(m, device=dev, dtype=torch.float64)).expand(b, m)
        best = torch.zeros(b, grid[0] * grid[1] * grid[2], dtype=torch.float64, device=dev)
        for s, (ex, ey, ez) in enumerate(self.sizes):
            at_corner = torch.zeros_like(best).scatter_reduce_(
                1, flat, torch.where(size_idx == s, prio, 0.0), reduce="amax")
            covered = trailing_box_max(at_corner.view(b, *grid), (ex, ey, ez))
            best = torch.maximum(best, covered.reshape(b, -1))
        return best


def trailing_box_max(vol: torch.Tensor, edges: tuple[int, int, int]) -> torch.Tensor:
    """(B, gx, gy, gz) -> same shape: out[i, j, k] = max of vol over the box of ``edges``
    ending at (i, j, k), i.e. cells (i - ex + 1 .. i, ...); cells outside count as 0.

    Separable: per axis, the maximum of ``edge`` shifted copies (much faster than
    ``max_pool3d`` on CPU for these small grids, and exact).
    """
    for axis, e in zip((1, 2, 3), edges):
        if e == 1:
            continue
        n = vol.shape[axis]
        pad = [0] * 6
        pad[2 * (3 - axis)] = e - 1
        padded = F.pad(vol, pad)
        out = padded.narrow(axis, e - 1, n)
        for shift in range(1, e):
            out = torch.maximum(out, padded.narrow(axis, e - 1 - shift, n))
        vol = out
    return vol
