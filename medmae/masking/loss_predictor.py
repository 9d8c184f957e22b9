"""A light loss predictor for loss-guided masking: crop -> predicted difficulty per token.

Exact difficulty (``scoring.complementary_token_loss``) costs two no-grad passes of the
autoencoder per micro-batch, about as much as the training step itself. Crops are drawn at
random every step, so scores of earlier crops cannot be reused for new ones; what can be
reused is what makes a token hard. This predictor (the adversarial generator's network,
:class:`MaskGenerator`: strided convolutions down to the token grid, a few 3x3x3 mixes,
a 1x1x1 head) learns it from the exact scores whenever they are refreshed, and scores the
crops in between for a small fraction of an autoencoder pass (HPM, Wang et al. 2023, also
learns a loss predictor; theirs is a decoder branch, this one reads the image).

Targets are ranks-in-spirit: the per-sample standardised log loss over valid tokens, so the
predictor learns which tokens are harder than others in the same crop, not the loss scale
(which falls as the autoencoder learns). Under torch.distributed its gradients are averaged
over ranks, so every rank keeps the same predictor.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from medmae.masking.mask_generator import MaskGenerator


def standardised_log_loss(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, N) losses >= 0, valid (B, N) -> (B, N) z-scored log loss over each sample's valid
    tokens (0 where not valid)."""
    logs = torch.log(scores.float().clamp(min=0) + 1e-6)
    w = valid.float()
    n = w.sum(1, keepdim=True).clamp(min=1)
    mean = (logs * w).sum(1, keepdim=True) / n
    var = ((logs - mean).square() * w).sum(1, keepdim=True) / n
    return torch.where(valid, (logs - mean) / torch.sqrt(var + 1e-6), torch.zeros_like(logs))


def valid_correlation(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> float:
    """Pearson correlation of ``a`` and ``b`` (B, N) over the valid tokens of all samples."""
    x, y = a[valid].double(), b[valid].double()
    if x.numel() < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / torch.sqrt((x * x).sum() * (y * y).sum()).clamp(min=1e-12))


class LossPredictor(nn.Module):
    """(B, C, X, Y, Z) crop -> (B, N) predicted standardised log loss; owns its Adam optimizer
    (its state travels in ``state_dict`` as extra state, so a resumed run continues exactly)."""

    def __init__(self, in_channels: int, patch_size: Sequence[int], width: int = 16, depth: int = 2,
                 lr: float = 1e-3):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"loss predictor lr must be > 0, got {lr}")
        self.net = MaskGenerator(in_channels, patch_size, width, depth)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(image.device.type, enabled=False):  # float32 under the engine's autocast
            return self.net(image.to(self.net.head.weight.dtype))

    @torch.no_grad()
    def predict(self, image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """-> (B, N) predicted difficulty (0 where not valid)."""
        pred = self._forward(image)
        return torch.where(valid, pred, torch.zeros_like(pred))

    def fit(self, image: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> float:
        """One Adam step towards the exact ``scores`` (B, N); returns the correlation of the
        prediction made before the step with the targets (how well it scored unseen crops)."""
        target = standardised_log_loss(scores, valid)
        self.optimizer.zero_grad(set_to_none=False)
        with torch.enable_grad():
            pred = self._forward(image)
            w = valid.float()
            loss = ((pred - target).square() * w).sum() / w.sum().clamp(min=1)
            loss.backward()
        self._average_gradients()
        self.optimizer.step()
        return valid_correlation(pred.detach(), target, valid)

    def _average_gradients(self) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        grads = [p.grad for p in self.net.parameters()]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
