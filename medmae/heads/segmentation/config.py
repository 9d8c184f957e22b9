"""``medmae finetune`` config: labelled crops, the segmenter, its initialisation, training.

Defaults follow common practice in fine-tuning masked-autoencoder ViTs for dense 3D tasks:
full fine-tuning with layer-wise LR decay 0.75, a short decoder-only warm-up (a random
decoder's first gradients would otherwise scramble the pretrained encoder), linear LR
warm-up then cosine decay, a moderate peak LR of 1e-4 (AdamW). See docs/segmentation.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medmae.config.base import StrictModel
from medmae.data.config import LoaderConfig
from medmae.heads.segmentation.classmap import check_class_map
from medmae.models.config import ModelConfig
from medmae.tracking.config import TrackingConfig
from medmae.training.config import RunConfig


class SegDataConfig(LoaderConfig):
    """The pretraining loader's settings (crops, augmentation) plus the labels."""

    crop_size: tuple[int, int, int] = (96, 96, 96)
    label_map: Literal["label", "anatomy"] = "label"
    """Cached map holding the reference label ids (``label``: the manifest's label column)."""
    classes: dict[str, list[int]] = {"foreground": [1]}
    """Class map: ``{name: [label ids]}``, merged per name, in output order (background is 0).
    E.g. ``{liver: [5], spleen: [1], kidneys: [2, 3]}`` on TotalSegmentator ids."""
    val_split: str | None = "val"
    """Cases validated by sliding window (None or an empty split: no validation)."""
    label_cases: int | None = Field(None, ge=1)
    """Train on only this many labelled cases of ``split`` (None = all), chosen with ``label_seed``."""
    label_seed: int = 0
    """Seed of the label-fraction choice (the same seed picks the same cases)."""

    @field_validator("classes")
    @classmethod
    def _classes(cls, v):
        return check_class_map(v)

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1


class SegModelConfig(StrictModel):
    encoder: ModelConfig = ModelConfig()
    """Encoder shape when training from scratch without ``init.source`` (a pretrained or
    ``init.load_weights=false`` source brings its own architecture)."""
    feature_size: int = Field(16, ge=1)
    """Decoder channels at full resolution (doubling per coarser stage; MONAI UNETR's default)."""
    norm: Literal["instance", "batch"] = "instance"
    res_block: bool = True


class InitConfig(StrictModel):
    source: str | None = None
    """`medmae export` folder, pretraining checkpoint (.pt) or pretraining run folder
    (its checkpoints/latest.pt); None = scratch with ``model.encoder``."""
    load_weights: bool = True
    """False: scratch, but with the source's architecture (the fair baseline)."""
    allow_partial: bool = False
    """Accept a load that misses or cannot place tensors (otherwise an error with the report)."""
    pos_resize: Literal["sincos", "trilinear"] = "sincos"
    """Position code for a crop other than the pretraining one: rebuilt sin-cos (exact for the
    fixed code this encoder uses) or trilinear resampling."""


class FinetuneTrainConfig(RunConfig):
    """Fine-tuning's ``train`` section: the shared run keys (other defaults for steps, betas,
    min_lr, keep_last, out_dir) plus the encoder's schedule."""

    steps: int = Field(2000, ge=1)
    peak_lr: float = Field(1e-4, gt=0)
    """Peak learning rate of the decoder and the last encoder block: absolute, not per 256
    crops (pretraining's ``train.lr_per_256`` is scaled by the batch; this one is not)."""
    encoder: Literal["full", "frozen"] = "full"
    """full: fine-tune every encoder weight (with ``layer_decay``); frozen: decoder only."""
    layer_decay: float = Field(0.75, gt=0, le=1)
    """Encoder block i of L trains at peak_lr * layer_decay ** (L - i); patch embedding at ** (L + 1)."""
    decoder_only_steps: int = Field(100, ge=0)
    """First steps in which only the decoder trains (encoder run without gradients)."""
    min_lr: float = Field(1e-6, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    keep_last: int = Field(2, ge=1)
    val_every: int = Field(500, ge=1)
    """Validate every this many steps (and at the end)."""
    out_dir: str = "runs/finetune"


class LossConfig(StrictModel):
    lambda_dice: float = Field(1.0, ge=0)
    lambda_ce: float = Field(1.0, ge=0)


class ValConfig(StrictModel):
    overlap: float = Field(0.25, ge=0, lt=1)
    """Sliding-window overlap."""
    sw_batch_size: int = Field(2, ge=1)
    mode: Literal["gaussian", "constant"] = "gaussian"
    max_cases: int | None = Field(None, ge=1)
    """Validate on only the first N cases of the split (None = all)."""


class FinetuneConfig(StrictModel):
    data: SegDataConfig = SegDataConfig()
    model: SegModelConfig = SegModelConfig()
    init: InitConfig = InitConfig()
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    loss: LossConfig = LossConfig()
    val: ValConfig = ValConfig()
    tracking: TrackingConfig = TrackingConfig()
    """``tracking.experiment`` defaults to ``medmae-finetune``."""

    @model_validator(mode="after")
    def _check(self) -> "FinetuneConfig":
        self.tracking.default_experiment("medmae-finetune")
        if self.loss.lambda_dice == 0 and self.loss.lambda_ce == 0:
            raise ValueError("loss.lambda_dice and loss.lambda_ce are both 0")
        return self
