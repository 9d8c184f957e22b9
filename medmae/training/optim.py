"""AdamW with weight decay only on weight matrices.

No decay on 1-D parameters (norm scales, biases) nor on position embeddings and learned
tokens (cls / mask tokens), as in MAE and timm's ``param_groups_weight_decay``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "pos_embedding")


def decays(name: str, param: torch.Tensor, no_decay_names: Sequence[str] = NO_DECAY_NAMES) -> bool:
    """True when ``param`` (named ``name``) should get weight decay."""
    if param.ndim <= 1:
        return False
    leaf = name.split(".")[-1]
    return not any(key == leaf or key in name.split(".") for key in no_decay_names)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``[{"params": decayed, "weight_decay": wd}, {"params": rest, 0.0}]``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if decays(name, p) else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters (fused on CUDA when all are on CUDA)."""
    groups = param_groups(model, weight_decay)
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError("model has no trainable parameters")
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                   params: Iterable[torch.Tensor], grad_clip: float | None) -> torch.Tensor | None:
    """After backward: unscale (fp16), clip ``params``' gradients to ``grad_clip``, step, zero.

    Returns the gradient norm before clipping (a 0-dim device tensor; None without clipping).
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = nn.utils.clip_grad_norm_(list(params), grad_clip).detach() if grad_clip is not None else None
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
