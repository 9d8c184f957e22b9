"""Everything a run carries from step to step, and its checkpoint dict.

Checkpoint keys (all loadable with ``torch.load(..., weights_only=True)``):

    step            optimizer steps done
    model           MaskedAutoencoder3D state_dict (plain module: no DDP/compile prefixes)
    optimizer       AdamW state_dict
    scaler          GradScaler state_dict (fp16) or None
    schedule        the WarmupCosine fields (for the record; the LR is a function of step)
    masking         the masking strategy's state_dict (EMA teacher, adversarial generator, ...)
    ranks           one entry per rank: {"rng": torch/numpy/python/mask-generator states,
                    "loader": the batch iterator's state_dict}
    world_size      ranks that wrote ``ranks``
    config          resolved PretrainConfig as a plain dict
    preprocess      the cache's preprocessing config (CACHE/config.yaml) as a dict, or None
    mlflow_run_id   the MLflow run to continue, or None
    data            what the cache held (medmae.preprocess.signature.cache_signature), or None
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medmae.training.distributed import DistInfo, gather_objects
from medmae.training.rng import capture_rng, restore_rng, to_plain
from medmae.training.schedule import WarmupCosine

logger = logging.getLogger(__name__)


@dataclass
class TrainParts:
    """The stateful pieces of a run (``model`` is the plain module, never the DDP wrapper)."""

    model: nn.Module
    strategy: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    schedule: WarmupCosine
    loader: Any
    mask_rng: torch.Generator

    def rank_state(self) -> dict[str, Any]:
        """This rank's own streams: RNGs (mask generator included) and the loader position."""
        return {"rng": capture_rng(self.mask_rng), "loader": to_plain(self.loader.state_dict())}

    def checkpoint(self, step: int, info: DistInfo, config: dict, preprocess: dict | None,
                   run_id: str | None) -> dict[str, Any] | None:
        """The checkpoint dict on rank 0 (None elsewhere); every rank must call it (gather)."""
        ranks = gather_objects(self.rank_state(), info)
        if not info.is_main:
            return None
        return {
            "step": int(step),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedule": self.schedule.state_dict(),
            "masking": self.strategy.state_dict(),
            "ranks": ranks,
            "world_size": info.world_size,
            "config": config,
            "preprocess": preprocess,
            "mlflow_run_id": run_id,
        }

    def restore(self, state: dict[str, Any], info: DistInfo) -> int:
        """Load a checkpoint dict into every part; returns the step to continue from."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["masking"])
        ranks = state.get("ranks") or []
        if state.get("world_size") == info.world_size and len(ranks) == info.world_size:
            mine = ranks[info.rank]
            restore_rng(mine["rng"], self.mask_rng)
            self.loader.load_state_dict(mine["loader"])
        else:
            logger.warning("checkpoint was written by %s ranks, this run has %d: crops and masks "
                           "restart from fresh per-rank seeds", state.get("world_size"), info.world_size)
        return int(state["step"])
