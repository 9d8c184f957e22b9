"""Training configs: :class:`RunConfig`, what every training run has (length, optimizer,
precision, device, seed, checkpoints, log cadence, output folder), and pretraining's
:class:`TrainConfig` on top of it (fine-tuning's is
medmae.heads.segmentation.config.FinetuneTrainConfig).

Learning rates are named for what they are: pretraining sets ``lr_per_256`` (per 256 crops,
scaled by the effective batch), fine-tuning sets ``peak_lr`` (absolute).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medmae.config.base import StrictModel

RENAMED: dict[str, str] = {"base_lr": "lr_per_256", "lr": "peak_lr"}
"""Old train keys -> their new names (a config using the old name is refused with the new one)."""


class RunConfig(StrictModel):
    """The ``train`` keys pretraining and fine-tuning share (pretraining's defaults)."""

    steps: int = Field(1000, ge=1)
    """Optimizer steps in the whole run."""
    warmup_steps: int = Field(100, ge=0)
    """Linear warm-up to the peak learning rate, then cosine decay to ``min_lr``
    (capped at ``steps``, so a short run with the default warm-up still runs)."""
    min_lr: float = Field(0.0, ge=0)
    """Floor of the cosine decay (absolute, not scaled by the batch)."""
    weight_decay: float = Field(0.05, ge=0)
    """AdamW decay on weight matrices; never on norms, biases, position embeddings, tokens."""
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU. fp16 (CUDA only) adds a GradScaler."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when available (one GPU per rank under torchrun), else CPU."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    seed: int = 0
    """Model init uses ``seed`` on every rank; crops, augmentation (and masks) ``seed + rank``."""
    checkpoint_every: int = Field(200, ge=1)
    keep_last: int = Field(3, ge=1)
    """Step checkpoints kept besides ``latest.pt`` (older ones are deleted)."""
    log_every: int = Field(10, ge=1)
    """Progress line and MLflow metrics every this many steps (the local log has every step)."""
    out_dir: str = "runs/pretrain"
    resume: bool = True
    """Continue from ``out_dir/checkpoints/latest.pt`` when it exists (refused when the
    checkpoint was made with settings its weights or schedule depend on)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in RENAMED.items():
                if old in data and old not in cls.model_fields:
                    raise ValueError(f"train.{old} was renamed train.{new}: write train.{new}={data[old]!r} "
                                     f"(the same meaning, {cls._lr_meaning()})")
        return data

    @classmethod
    def _lr_meaning(cls) -> str:
        return "per 256 crops" if "lr_per_256" in cls.model_fields else "absolute peak rate"


class TrainConfig(RunConfig):
    """Pretraining's ``train`` section."""

    lr_per_256: float = Field(1.5e-4, gt=0)
    """Learning rate per 256 crops (MAE's ``blr``): the peak rate is
    ``lr_per_256 * effective_batch / 256``, effective batch = batch_size * grad_accum * ranks
    (logged as ``derived.peak_lr``)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step (effective batch = batch_size * grad_accum * ranks)."""
    trim_fraction: float = Field(0.0, ge=0, le=0.5)
    """Robust pretraining: each crop's loss leaves out this fraction of its hidden voxels with
    the largest error (medmae/training/robust_loss.py), so a model trained on unlabeled
    patient scans learns lesions less; 0 = the plain mean squared error. The logged loss
    stays the plain one (comparable across settings)."""
    figure_every: int = Field(200, ge=1)
    """Reconstruction montage every this many steps (and at the end)."""
    figure_samples: int = Field(2, ge=1)
    """Crops shown in each montage."""
