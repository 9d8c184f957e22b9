"""Top-level configs, one per command, composed from the stages' own sections."""

from __future__ import annotations

from medmae.config.base import StrictModel
from medmae.data.config import LoaderConfig
from medmae.masking.config import MaskingConfig
from medmae.models.config import ModelConfig
from medmae.preprocess.config import PreprocessConfig
from medmae.tracking.config import TrackingConfig
from medmae.training.config import TrainConfig


class PretrainConfig(StrictModel):
    data: LoaderConfig = LoaderConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = MaskingConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()


__all__ = ["PretrainConfig", "PreprocessConfig"]
