"""AdamW for fine-tuning: layer-wise LR decay over the encoder, optional frozen encoder.

Layer ids (L = encoder depth): patch embedding 0, block i -> i + 1, the encoder's final norm
and the whole decoder L + 1. A parameter of layer id l trains at ``lr * decay ** (L + 1 - l)``
(BEiT / MAE fine-tuning). Weight decay only on weight matrices (:func:`medmae.training.optim.decays`).
"""

from __future__ import annotations

import torch
from torch import nn

from medmae.training.optim import decays


def layer_id(name: str, depth: int) -> int:
    """Layer id of a SegmentationViT parameter name (see the module docstring)."""
    if not name.startswith("encoder."):
        return depth + 1
    rest = name[len("encoder."):]
    if rest.startswith(("patch_embed", "pos_embed")):
        return 0
    if rest.startswith("blocks."):
        return int(rest.split(".")[1]) + 1
    return depth + 1


def param_groups(model: nn.Module, depth: int, weight_decay: float, layer_decay: float,
                 frozen_encoder: bool) -> list[dict]:
    """AdamW groups keyed by (layer id, decayed); each carries its ``lr_scale``.

    Encoder parameters are left out when ``frozen_encoder`` (and set to requires_grad=False).
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if name.startswith("encoder.") and frozen_encoder:
            p.requires_grad_(False)
            continue
        lid, dec = layer_id(name, depth), decays(name, p)
        g = groups.setdefault((lid, dec), {"params": [], "weight_decay": weight_decay if dec else 0.0,
                                           "lr_scale": layer_decay ** (depth + 1 - lid), "layer": lid})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def build_finetune_optimizer(model: nn.Module, depth: int, weight_decay: float, layer_decay: float,
                             frozen_encoder: bool, betas: tuple[float, float]) -> torch.optim.AdamW:
    groups = param_groups(model, depth, weight_decay, layer_decay, frozen_encoder)
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=0.0, betas=betas, fused=fused or None)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's LR to ``lr * lr_scale``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
