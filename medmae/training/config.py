"""Training engine config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medmae.config.base import StrictModel


class TrainConfig(StrictModel):
    steps: int = Field(1000, ge=1)
    lr: float = Field(1.5e-4, gt=0)
    """Base learning rate (for batch 256, scaled linearly by the effective batch)."""
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = Field(100, ge=0)
    min_lr: float = 0.0
    grad_accum: int = Field(1, ge=1)
    grad_clip: float | None = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU."""
    compile: bool = False
    seed: int = 0
    checkpoint_every: int = Field(200, ge=1)
    figure_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    out_dir: str = "runs/pretrain"
    resume: bool = True
