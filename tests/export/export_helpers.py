"""Training-style checkpoints of small MAEs for the export tests."""

from __future__ import annotations

from pathlib import Path

import torch

from medmae.training.pretrain_config import PretrainConfig
from medmae.models import build_mae

# 12 layers and patch 16 so that MONAI's UNETR (which fixes both) can hold the encoder
UNETR_FIT = {"size": "custom", "embed_dim": 48, "depth": 12, "num_heads": 4, "mlp_ratio": 2.0}


def write_checkpoint(path: Path, model: dict | None = None, crop=(32, 32, 32), step=123, prefix="", seed=0):
    """Save {"model", "config", "step", "preprocess"} like the training engine; returns (path, mae)."""
    cfg = PretrainConfig.model_validate({"model": model or UNETR_FIT, "data": {"crop_size": list(crop)}})
    torch.manual_seed(seed)
    mae = build_mae(cfg.model, cfg.data.crop_size)
    state = {prefix + k: v for k, v in mae.state_dict().items()}
    preprocess = {"spacing": [1.5, 1.5, 3.0], "ct": {"window": [-1000.0, 1000.0]}, "mr": {"percentiles": [0.5, 99.5]}}
    torch.save({"model": state, "config": cfg.model_dump(mode="json"), "step": step, "preprocess": preprocess}, path)
    return path, mae


def unetr_for(img_size, qkv_bias=True, hidden=48, heads=4, mlp=96, proj_type="conv"):
    from monai.networks.nets import UNETR

    torch.manual_seed(1)
    return UNETR(in_channels=1, out_channels=2, img_size=img_size, feature_size=8, hidden_size=hidden,
                 mlp_dim=mlp, num_heads=heads, qkv_bias=qkv_bias, proj_type=proj_type)
