"""Per-token difficulty: the model's reconstruction loss on every token.

Model contract (``medmae.models``): ``out = model(x, mask, valid)`` returns an object with
``.token_loss`` (B, N), the per-token reconstruction MSE of every token.
"""

from __future__ import annotations

import torch
from torch import nn

from medmae.masking.select import topk_mask, uniform


@torch.no_grad()
def complementary_token_loss(model: nn.Module, x: torch.Tensor, valid: torch.Tensor,
                             generator: torch.Generator) -> torch.Tensor:
    """Loss of every token when hidden: two no-grad passes with complementary masks.

    x (B, C, X, Y, Z), valid (B, N) -> (B, N) float: the first pass hides a random half
    of the valid tokens, the second hides the other half; each token takes its loss from
    the pass in which it was hidden. Invalid tokens score 0.
    """
    first = topk_mask(uniform(tuple(valid.shape), generator, valid.device), valid, 0.5)
    second = valid & ~first
    loss_first = model(x, first, valid).token_loss
    loss_second = model(x, second, valid).token_loss
    loss = torch.where(first, loss_first, loss_second).float()
    return torch.where(valid, loss, torch.zeros_like(loss))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``)."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
