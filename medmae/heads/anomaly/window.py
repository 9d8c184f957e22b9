"""The per-window predictor handed to MONAI's ``sliding_window_inference``.

Input windows carry C image channels, the body mask and a unit map (structured masks):
(B, C + 2, X, Y, Z). For each window the mask draws are made (see
:mod:`medmae.heads.anomaly.draws`), the MAE reconstructs the window under every draw in
one batched forward pass, and the window returns running sums over the draws, voxel by
voxel, counting only draws in which the voxel was hidden:

    S1 = sum h e     S2 = sum h e^2     R = sum h pred     n = sum h

with ``e = x - pred`` (observed minus expected: > 0 brighter than expected) and h = 1 when
the voxel's token was hidden. Output (B, 3C + 1, X, Y, Z) = [S1, S2, R, n]. The Gaussian
blend of sliding_window_inference averages these sums across overlapping windows with the
same weights, so S1 / n etc. afterwards are weighted means over windows and draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medmae.heads.anomaly.draws import complementary_draws, token_units, unit_draws
from medmae.models.mae import MaskedAutoencoder3D
from medmae.tokens import token_fraction, unpatchify


@dataclass
class DrawPlan:
    """How windows are masked. ``only``: keep just these draw indices (the naive benchmark
    peer runs one draw per sliding-window pass with the same masks)."""

    structured: bool
    draws: int
    ratio: float
    min_fraction: float
    seed: int
    only: tuple[int, ...] | None = None


class WindowScorer:
    """Callable (B, C + 2, X, Y, Z) -> (B, 3C + 1, X, Y, Z); see the module docstring.

    Window i of a pass (counted in call order) draws its masks from seed ``plan.seed + i``,
    so two passes over the same scan draw the same masks.
    """

    def __init__(self, model: MaskedAutoencoder3D, plan: DrawPlan, autocast_dtype: torch.dtype | None = None,
                 max_batch: int = 16):
        self.model, self.plan, self.dtype, self.max_batch = model, plan, autocast_dtype, max_batch
        self.channels = model.in_channels
        self.windows = 0

    def masks_for(self, body: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One window's body (X, Y, Z) and units (X, Y, Z) -> (valid (N,), masks (K', N))."""
        p = self.plan
        valid = token_fraction(body[None, None], self.model.patch_size)[0] >= max(p.min_fraction, 1e-6)
        gen = torch.Generator().manual_seed(p.seed + self.windows)
        self.windows += 1
        if valid.sum() < 2:
            return valid, torch.zeros(0, valid.numel(), dtype=torch.bool, device=valid.device)
        if p.structured:
            masks = unit_draws(valid, token_units(units, self.model.patch_size))
        else:
            masks = complementary_draws(valid, p.draws, p.ratio, gen)
        if p.only is not None:
            masks = masks[[k for k in p.only if k < masks.shape[0]]]
        return valid, masks

    @torch.no_grad()
    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        c = self.channels
        image, body, units = window[:, :c], window[:, c] > 0.5, window[:, c + 1].round().long()
        jobs = []  # (sample index, valid (N,), mask (N,))
        for b in range(window.shape[0]):
            valid, masks = self.masks_for(body[b], units[b])
            jobs += [(b, valid, m) for m in masks]
        out = torch.zeros(window.shape[0], 3 * c + 1, *window.shape[2:], device=window.device)
        for i in range(0, len(jobs), self.max_batch):
            self._accumulate(image, jobs[i:i + self.max_batch], out)
        return out

    def _accumulate(self, image: torch.Tensor, jobs: list, out: torch.Tensor) -> None:
        model = self.model
        which = torch.tensor([j[0] for j in jobs], device=image.device)
        x = image[which]
        valid = torch.stack([j[1] for j in jobs])
        mask = torch.stack([j[2] for j in jobs])
        with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            pred = model(x, mask, valid).pred
        # normalised targets (per patch, or per window over its visible tokens) back to intensities
        pred = model.reconstruct(pred.float(), x.float(), mask, valid, paste=False)  # B' C X Y Z
        p = int(torch.tensor(model.patch_size).prod())
        hidden = unpatchify((mask & valid)[..., None].expand(-1, -1, p).float(), model.patch_size, model.grid, 1)
        e = (x - pred) * hidden
        sums = torch.cat([e, e * (x - pred), pred * hidden, hidden], 1)  # B' 3C+1 X Y Z
        out.index_add_(0, which, sums)
