"""Test-time token masks for one window: complementary random draws, or structured units.

Random: the valid tokens are put in a seeded random order; draw k hides a run of ``m``
consecutive tokens of that order starting at ``floor(k n / K)`` (wrapping round), with
``m = max(round(ratio n), ceil(n / K))`` capped at ``n - 1``. The runs' starts are at most
``ceil(n / K)`` apart, so every valid token is hidden in at least one draw, and each draw
hides about the training ratio.

Structured: each unit (anatomy label, or hemisphere) present among the valid tokens is
hidden in turn; a draw that would hide every valid token (nothing left to see) is skipped.
"""

from __future__ import annotations

import math

import torch


def complementary_draws(valid: torch.Tensor, draws: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """valid (N,) bool -> (K, N) bool masks (True = hidden), every valid token hidden >= once.

    Needs at least 2 valid tokens. Invalid tokens are never hidden.
    """
    idx = torch.nonzero(valid.cpu(), as_tuple=False).flatten()
    n = idx.numel()
    if n < 2:
        raise ValueError(f"need >= 2 valid tokens to draw masks, got {n}")
    order = idx[torch.randperm(n, generator=generator)]
    m = min(max(int(round(ratio * n)), math.ceil(n / draws)), n - 1)
    masks = torch.zeros(draws, valid.numel(), dtype=torch.bool)
    for k in range(draws):
        start = (k * n) // draws
        run = (start + torch.arange(m)) % n
        masks[k, order[run]] = True
    return masks.to(valid.device)


def token_units(units: torch.Tensor, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """(X, Y, Z) int unit map -> (N,) the most frequent non-zero unit per token (0 if none)."""
    from medmae.tokens import patchify

    lab = patchify(units[None, None].float(), patch_size)[0].round().long()  # N P
    n, p = lab.shape
    top = int(lab.max().item()) if lab.numel() else 0
    if top <= 0:
        return torch.zeros(n, dtype=torch.long, device=units.device)
    token = torch.arange(n, device=lab.device)[:, None].expand(n, p)
    keep = lab > 0
    counts = torch.bincount(token[keep] * (top + 1) + lab[keep], minlength=n * (top + 1)).reshape(n, top + 1)
    best = counts.argmax(1)
    return torch.where(counts.sum(1) > 0, best, torch.zeros_like(best))


def unit_draws(valid: torch.Tensor, unit_of_token: torch.Tensor) -> torch.Tensor:
    """valid (N,) bool, unit_of_token (N,) long -> (K', N) masks hiding each unit in turn.

    K' = number of units among the valid tokens whose hiding leaves >= 1 valid token
    visible (0 rows when none does, e.g. a window inside one hemisphere).
    """
    rows = []
    for u in torch.unique(unit_of_token[valid]).tolist():
        if u == 0:
            continue
        hide = valid & (unit_of_token == u)
        if hide.any() and (valid & ~hide).any():
            rows.append(hide)
    if not rows:
        return torch.zeros(0, valid.numel(), dtype=torch.bool, device=valid.device)
    return torch.stack(rows)
