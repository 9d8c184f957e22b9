"""Turn a (B, N) token selection into gather indices, padded when counts differ.

Selected tokens keep their grid order. When every sample selects the same number of
tokens there is no padding and no key mask, so SDPA may pick its flash/fused kernels;
otherwise each row is padded to the batch maximum with unselected tokens' indices and a
(B, L) ``keep`` mask marks the real entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Selection:
    """ids: (B, L) long token indices, selected first in grid order; keep: (B, L) bool
    True = selected (None = every entry selected)."""

    ids: torch.Tensor
    keep: torch.Tensor | None

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    def scatter_index(self, num_tokens: int) -> torch.Tensor:
        """(B, L) indices for scattering back into N + 1 slots: padding goes to slot N."""
        if self.keep is None:
            return self.ids
        return torch.where(self.keep, self.ids, torch.full_like(self.ids, num_tokens))


def select_tokens(flags: torch.Tensor, counts: Sequence[int]) -> Selection:
    """flags: (B, N) bool; counts: per-sample ``flags.sum(1)`` already on the host."""
    length = max(counts)
    ids = torch.argsort((~flags).to(torch.int32), dim=1, stable=True)[:, :length]
    keep = None if min(counts) == length else torch.gather(flags, 1, ids)
    return Selection(ids, keep)


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, N, D), (B, L) -> (B, L, D)."""
    return torch.gather(tokens, 1, ids[..., None].expand(-1, -1, tokens.shape[-1]))


def scatter_tokens(base: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Out-of-place: base (B, S, D) with ``values`` (B, L, D) written at ``index`` (B, L)."""
    return base.scatter(1, index[..., None].expand(-1, -1, values.shape[-1]), values.to(base.dtype))
