"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

As in MAE (He et al. 2022): the base rate is given for a batch of 256 and scaled linearly
by the effective batch, ``lr = lr_per_256 * effective_batch / 256``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


def scaled_lr(lr_per_256: float, effective_batch: int) -> float:
    """Linear scaling rule: ``lr_per_256 * effective_batch / 256``."""
    if effective_batch < 1:
        raise ValueError(f"effective batch must be >= 1, got {effective_batch}")
    return lr_per_256 * effective_batch / 256


@dataclass(frozen=True)
class WarmupCosine:
    """``lr(step)`` for step 0..total-1: 0 -> peak over ``warmup`` steps, cosine to ``min_lr``.

    A pure function of the step, so resuming needs only the step; the fields are saved in
    checkpoints so that a run shows which schedule it followed.
    """

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must be in [0, {self.total_steps}], got {self.warmup_steps}")
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({self.min_lr}) exceeds the peak learning rate ({self.peak_lr})")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every param group's ``lr`` for ``step``; returns it."""
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return asdict(self)
