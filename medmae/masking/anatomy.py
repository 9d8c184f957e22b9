"""Anatomy-aware structured masking: hide whole anatomical units from the cached priors."""

from __future__ import annotations

import logging
from typing import Literal, Mapping

import torch

from medmae.masking.base import MaskContext, MaskingStrategy
from medmae.masking.symmetry import SymmetricMode, mirror_index, symmetric_mask
from medmae.masking.units import unit_priority

UnitSource = Literal["anatomy", "tissue", "supervoxels"]
log = logging.getLogger(__name__)


class AnatomyMasking(MaskingStrategy):
    """Hide whole units of a per-token prior map until round(ratio * n_valid).

    source: which map of ``ctx.maps`` defines the units: "anatomy" (organs / brain
    regions of the label map), "tissue" (multi-Otsu classes) or "supervoxels" (SLIC).
    Units are hidden in a random order weighted by ``label_weights`` (e.g. ``{5: 2.0}``:
    label 5 is twice as likely as a weight-1 unit to be the next one hidden). Tokens of
    ``background_label`` are single-token units, so unlabelled tissue fills the budget
    like random masking. Only the unit that crosses the budget is partially hidden.
    ``symmetric`` ("none" | "mirror" | "both") adds left-right semantics for brains about
    each crop's mid-sagittal plane (``ctx.mirror``; the crop's centre when the batch has no
    plane), see :func:`medmae.masking.symmetry.symmetric_mask`.
    """

    def __init__(self, ratio: float, source: UnitSource = "anatomy",
                 label_weights: Mapping[int, float] | None = None,
                 background_label: int | None = 0, symmetric: SymmetricMode = "none"):
        super().__init__(ratio)
        if source not in ("anatomy", "tissue", "supervoxels"):
            raise ValueError(f"anatomy masking source must be anatomy, tissue or supervoxels, got {source!r}")
        if symmetric not in ("none", "mirror", "both"):
            raise ValueError(f"symmetric must be none, mirror or both, got {symmetric!r}")
        self.source = source
        self.label_weights = {int(k): float(v) for k, v in (label_weights or {}).items()}
        for label, w in self.label_weights.items():
            if not w > 0:
                raise ValueError(f"label weight for label {label} must be > 0, got {w}")
        self.background_label = background_label
        self.symmetric = symmetric
        self._warned = False

    def forward(self, ctx: MaskContext, step: int, generator: torch.Generator) -> torch.Tensor:
        """-> mask (B, N) bool."""
        if self.source not in ctx.maps:
            raise ValueError(f"anatomy masking from {self.source!r} needs that prior map in the batch; "
                             f"add {self.source!r} to data.priors (available: {sorted(ctx.maps)})")
        priority, coin = unit_priority(ctx.maps[self.source], generator, self.label_weights, self.background_label)
        mirror = ctx.mirror
        if mirror is None and self.symmetric != "none":
            if not self._warned:
                log.warning("symmetric masking: the batch carries no 'midline'; mirroring about each "
                            "crop's centre (right only for crops centred on the mid-sagittal plane)")
                self._warned = True
            mirror = mirror_index(ctx.grid, ctx.device).expand(ctx.batch_size, -1)
        return symmetric_mask(priority, coin, ctx.valid, ctx.grid, mirror, self.ratio, self.symmetric, generator)
