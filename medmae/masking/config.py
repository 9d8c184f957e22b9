"""Masking config: which strategy (or mixture) hides which tokens.

One typed section per strategy family; ``strategy`` picks which one is used, and a
mixture lists strategies with weights (each item may override its family's section).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medmae.config.base import StrictModel

StrategyName = Literal["random", "block", "anatomy", "loss_guided", "adversarial", "mixture"]


class BlockConfig(StrictModel):
    """Block (cube) masking: random blocks of tokens until the budget."""

    min_edge: int = Field(1, ge=1)
    """Smallest block edge, in tokens."""
    max_edge: int = Field(3, ge=1)
    """Largest block edge, in tokens."""
    isotropic: bool = True
    """Cubes (one edge for all axes); False draws each axis' edge independently."""

    @model_validator(mode="after")
    def _edges_ordered(self):
        if self.min_edge > self.max_edge:
            raise ValueError(f"min_edge ({self.min_edge}) must be <= max_edge ({self.max_edge})")
        return self


class AnatomyConfig(StrictModel):
    """Anatomy-aware masking: hide whole units of a cached prior map."""

    source: Literal["anatomy", "tissue", "supervoxels"] = "anatomy"
    """Which prior map defines the units (must be listed in data.priors)."""
    label_weights: dict[int, float] | None = None
    """Label -> sampling weight (> 0; unlisted labels 1), e.g. {5: 2.0} hides label 5 more often."""
    background_label: int | None = 0
    """Tokens of this label are single-token units (None: it is a unit like any label)."""
    symmetric: Literal["none", "mirror", "both"] = "none"
    """Brains: "mirror" hides a unit while its left-right mirror stays visible; "both"
    hides a unit together with its mirror. Mirrors are taken about each case's stored
    mid-sagittal plane (meta.json "midline"); needs data.augment.rotate90_prob 0 (see docs/masking.md)."""

    @field_validator("label_weights")
    @classmethod
    def _positive(cls, v: dict[int, float] | None) -> dict[int, float] | None:
        bad = {k: w for k, w in (v or {}).items() if not w > 0}
        if bad:
            raise ValueError(f"label weights must be > 0, got {bad}")
        return v


class LossGuidedConfig(StrictModel):
    """Loss-guided hard-patch masking (HPM) with an easy-to-hard schedule."""

    alpha_start: float = Field(0.0, ge=0, le=1)
    """Share of hidden tokens chosen by difficulty at step 0."""
    alpha_end: float = Field(0.5, ge=0, le=1)
    """Share reached at ``schedule_steps``."""
    schedule: Literal["linear", "cosine"] = "linear"
    schedule_steps: int | None = Field(None, ge=0)
    """Steps of the ramp; None = the run's total training steps."""
    ema_decay: float | None = Field(None, gt=0, lt=1)
    """Score tokens with an EMA copy of the model (e.g. 0.999) instead of the model itself."""
    score_every: int = Field(1, ge=1)
    """Exact scores (two no-grad passes per micro-batch) every this many steps; in between, a
    light loss predictor trained on them scores the crops (1 = exact every step)."""
    predictor_lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the loss predictor (used when score_every > 1)."""


class AdversarialConfig(StrictModel):
    """Adversarial masking: a mask generator trained by REINFORCE to maximise the loss."""

    width: int = Field(16, ge=1)
    """Channels of the generator network."""
    depth: int = Field(2, ge=0)
    """3x3x3 convolutions on the token grid after the strided stem."""
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    entropy_weight: float = Field(0.01, ge=0)
    """Bonus on the policy's normalised entropy, against collapse onto a few tokens (weak
    next to per-token credit: ``max_logit`` is what bounds the policy)."""
    baseline_decay: float = Field(0.9, ge=0, lt=1)
    """Decay of the moving mean / variance that standardise the reward."""
    warmup_steps: int = Field(50, ge=0)
    """Share of randomly masked samples falls from 1 to ``min_random_fraction`` over these steps."""
    min_random_fraction: float = Field(0.25, ge=0, le=1)
    """Share of samples still masked at random after the warm-up: the reference that
    ``adversarial/reward_gain`` (loss on generator masks / loss on random masks) is read against."""
    grad_clip: float | None = Field(1.0, gt=0)
    credit: Literal["token", "sample"] = "token"
    """"token": each hidden token's loss against its crop's mean hidden loss trains the
    generator (learns on real scans); "sample": REINFORCE with one reward per crop, whose
    crop-to-crop spread drowns the signal on real scans (see docs/masking.md)."""
    max_logit: float | None = Field(2.0, gt=0)
    """Squash logits into (-max_logit, max_logit) (tanh): no token is ever more than
    exp(2 * max_logit) times likelier than another. None: unbounded."""


class MixtureItem(StrictModel):
    """One strategy of a mixture, its weight, and optional overrides of its section."""

    strategy: Literal["random", "block", "anatomy", "loss_guided", "adversarial"]
    weight: float = Field(1.0, ge=0)
    ratio: float | None = Field(None, gt=0, lt=1)
    """None = masking.ratio."""
    block: BlockConfig | None = None
    anatomy: AnatomyConfig | None = None
    loss_guided: LossGuidedConfig | None = None
    adversarial: AdversarialConfig | None = None

    @model_validator(mode="after")
    def _own_section_only(self):
        for name in ("block", "anatomy", "loss_guided", "adversarial"):
            if getattr(self, name) is not None and name != self.strategy:
                raise ValueError(f"mixture item of strategy {self.strategy!r} cannot set section {name!r}")
        return self


class MaskingConfig(StrictModel):
    strategy: StrategyName = "random"
    ratio: float = Field(0.75, gt=0, lt=1)
    foreground_only: bool = True
    """Tokens outside the body are neither visible nor predicted (and are dropped)."""
    foreground_min_fraction: float = Field(0.1, ge=0, le=1)
    """A token counts as body when at least this fraction of its voxels are body."""
    foreground_min_tokens: int = Field(2, ge=2)
    """A crop with fewer body tokens than this falls back to all tokens valid."""
    block: BlockConfig = BlockConfig()
    anatomy: AnatomyConfig = AnatomyConfig()
    loss_guided: LossGuidedConfig = LossGuidedConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    mixture: list[MixtureItem] = []
    """Used when strategy == "mixture"."""

    def maps_read(self) -> list[str]:
        """The cached prior maps (beyond "body") the strategies read: the ``source`` of each
        anatomy item that can be drawn (weight > 0). Pretraining loads only these of
        ``data.priors``, and checks that they are listed there."""
        items = self.mixture if self.strategy == "mixture" else [MixtureItem(strategy=self.strategy)]
        drawn = [i for i in items if i.strategy == "anatomy" and i.weight > 0]
        return sorted({(i.anatomy or self.anatomy).source for i in drawn})

    @property
    def symmetric_keys(self) -> list[str]:
        """Dotted keys of the anatomy sections in use that set symmetric masking."""
        if self.strategy == "anatomy":
            return ["masking.anatomy.symmetric"] if self.anatomy.symmetric != "none" else []
        if self.strategy != "mixture":
            return []
        return [f"masking.mixture.{i}.anatomy.symmetric" if item.anatomy else "masking.anatomy.symmetric"
                for i, item in enumerate(self.mixture)
                if item.strategy == "anatomy" and (item.anatomy or self.anatomy).symmetric != "none"]

    @model_validator(mode="after")
    def _mixture_listed(self):
        if self.strategy == "mixture":
            if not self.mixture:
                raise ValueError("strategy 'mixture' needs a non-empty 'mixture' list")
            if sum(item.weight for item in self.mixture) <= 0:
                raise ValueError("mixture weights must have a positive sum")
        return self
