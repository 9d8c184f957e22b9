"""``medmae pretrain``'s config, composed from the stages' own sections (it lives beside the
code it configures; medmae.config holds only the loader and override machinery)."""

from __future__ import annotations

from pydantic import model_validator

from medmae.config.base import StrictModel
from medmae.data.config import LoaderConfig
from medmae.masking.config import MaskingConfig
from medmae.models.config import ModelConfig
from medmae.tracking.config import TrackingConfig
from medmae.training.config import TrainConfig


class PretrainConfig(StrictModel):
    data: LoaderConfig = LoaderConfig()
    model: ModelConfig = ModelConfig()
    masking: MaskingConfig = MaskingConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _check(self):
        """Fill tracking.experiment (default ``medmae-pretrain``).

        Quarter turns in axes (0, 1) move the left-right axis off axis 0, where symmetric
        masking mirrors (flips are fine: the loader moves each crop's midline with them)."""
        self.tracking.default_experiment("medmae-pretrain")
        keys = self.masking.symmetric_keys
        if keys and self.data.augment.rotate90_prob > 0:
            raise ValueError(f"data.augment.rotate90_prob = {self.data.augment.rotate90_prob} turns crops so "
                             f"that left-right is no longer axis 0, which symmetric masking ({', '.join(keys)}) "
                             f"mirrors; set data.augment.rotate90_prob to 0 or the symmetric mode to none")
        return self


__all__ = ["PretrainConfig"]
