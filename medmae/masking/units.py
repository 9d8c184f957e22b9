"""Random, weighted orders of anatomical units (labels of a per-token prior map)."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from medmae.masking.select import gumbel, uniform


def unit_priority(units: torch.Tensor, generator: torch.Generator,
                  label_weights: Mapping[int, float] | None = None,
                  background_label: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Order the units of each sample at random; higher priority = hidden first.

    units: (B, N) long label per token. A unit is the set of tokens of one sample sharing
    a label; tokens of ``background_label`` are each a unit of their own (singletons).
    The order is weighted sampling without replacement (Gumbel-top-k on log weights): the
    next unit hidden is unit u with probability w_u / sum of the remaining weights,
    whatever its size; ``label_weights`` maps label -> weight > 0 (default 1; background
    singletons take the weight of ``background_label``).

    -> priority (B, N) long, one distinct value per unit (equal on a unit's tokens);
       coin (B, N) bool, one fair coin per unit (equal on a unit's tokens).
    """
    b, n = units.shape
    dev = units.device
    if b == 0:
        return torch.zeros_like(units), torch.zeros_like(units, dtype=torch.bool)
    weights = dict(label_weights or {})
    for label, w in weights.items():
        if not (w > 0 and math.isfinite(w)):
            raise ValueError(f"label weight for label {label} must be finite and > 0, got {w}")
    low = int(units.min())
    span = int(units.max()) - low + 1
    rel = units - low
    if background_label is not None:
        singleton = span + torch.arange(n, device=dev).expand(b, n)
        rel = torch.where(units == background_label, singleton, rel)
    stride = span + n
    key = torch.arange(b, device=dev)[:, None] * stride + rel
    uid, inverse = torch.unique(key, return_inverse=True)  # U units over the batch

    rel_u = uid % stride
    label_u = rel_u + low
    w_u = torch.ones(uid.shape, dtype=torch.float64, device=dev)
    for label, w in weights.items():
        w_u[(label_u == label) & (rel_u < span)] = w
    if background_label is not None:
        w_u[rel_u >= span] = weights.get(background_label, 1.0)

    draw = gumbel(tuple(uid.shape), generator, dev, torch.float64)
    order = torch.argsort(torch.log(w_u) + draw, descending=True)
    prio_u = torch.empty_like(order)
    prio_u[order] = torch.arange(len(order), 0, -1, device=dev)
    coin_u = uniform(tuple(uid.shape), generator, dev) < 0.5
    return prio_u[inverse], coin_u[inverse]
