"""Building a masking strategy from its config."""

from __future__ import annotations

from typing import Sequence

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.base import MaskingStrategy
from medmae.masking.block import BlockMasking
from medmae.masking.config import MaskingConfig, MixtureItem
from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking


def build_masking(cfg: MaskingConfig, *, patch_size: Sequence[int] = (16, 16, 16), in_channels: int = 1,
                  total_steps: int | None = None) -> MaskingStrategy:
    """MaskingConfig -> strategy.

    ``patch_size`` and ``in_channels`` (the model's) size the adversarial generator and the
    loss-guided loss predictor;
    ``total_steps`` (the run's) is the loss-guided ramp length when its
    ``schedule_steps`` is None.
    """
    if cfg.strategy == "mixture":
        parts = [_build_one(item, cfg, patch_size, in_channels, total_steps) for item in cfg.mixture]
        return MixtureMasking(parts, [item.weight for item in cfg.mixture])
    return _build_one(MixtureItem(strategy=cfg.strategy), cfg, patch_size, in_channels, total_steps)


def _build_one(item: MixtureItem, cfg: MaskingConfig, patch_size: Sequence[int], in_channels: int,
               total_steps: int | None) -> MaskingStrategy:
    """One strategy; the item's own section and ratio, when set, replace the config's."""
    ratio = cfg.ratio if item.ratio is None else item.ratio
    if item.strategy == "random":
        return RandomMasking(ratio)
    if item.strategy == "block":
        b = item.block or cfg.block
        return BlockMasking(ratio, b.min_edge, b.max_edge, b.isotropic)
    if item.strategy == "anatomy":
        a = item.anatomy or cfg.anatomy
        return AnatomyMasking(ratio, a.source, a.label_weights, a.background_label, a.symmetric)
    if item.strategy == "loss_guided":
        lg = item.loss_guided or cfg.loss_guided
        steps = lg.schedule_steps if lg.schedule_steps is not None else total_steps
        if steps is None:
            raise ValueError("loss_guided masking: set masking.loss_guided.schedule_steps or pass total_steps")
        return LossGuidedMasking(ratio, lg.alpha_start, lg.alpha_end, steps, lg.schedule, lg.ema_decay,
                                 lg.score_every, in_channels, patch_size, lg.predictor_lr)
    if item.strategy == "adversarial":
        ad = item.adversarial or cfg.adversarial
        return AdversarialMasking(ratio, in_channels, patch_size, ad.width, ad.depth, ad.lr, ad.betas,
                                  ad.entropy_weight, ad.baseline_decay, ad.warmup_steps,
                                  ad.min_random_fraction, ad.grad_clip, ad.credit, ad.max_logit)
    raise ValueError(f"unknown masking strategy {item.strategy!r}")
