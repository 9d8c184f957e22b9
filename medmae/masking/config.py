"""Masking config: which strategy (or mixture) hides which tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medmae.config.base import StrictModel


class MaskingConfig(StrictModel):
    strategy: Literal["random", "block", "anatomy", "loss_guided", "adversarial", "mixture"] = "random"
    ratio: float = Field(0.75, gt=0, lt=1)
    foreground_only: bool = True
    """Tokens outside the body are neither visible nor predicted (and are dropped)."""
    foreground_min_fraction: float = Field(0.1, ge=0, le=1)
    """A token counts as body when at least this fraction of its voxels are body."""
