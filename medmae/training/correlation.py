"""A number a person can read: how well the reconstruction follows the truth on hidden tokens.

``hidden_correlation`` is Pearson's r between prediction and target over the hidden, valid
voxels of each sample, averaged over the samples of the batch:

* 1 -- the hidden patches are reconstructed up to an affine change of intensity;
* 0 -- the prediction carries no structure, e.g. predict-the-mean (a constant per sample);
  a sample whose prediction (or truth) is constant over its hidden voxels scores 0.

It is computed where the loss is: on the regression targets. With ``norm_pix_loss`` those
are normalised per token, so r measures the structure inside each hidden patch (patch means
are not rewarded); with raw-intensity targets it also credits getting each hidden patch's
intensity level right from its visible neighbours. Per sample, not pooled over the batch,
so that different intensity levels of different crops do not count as structure.
"""

from __future__ import annotations

import torch

from medmae.tokens import patch_differences


def hidden_correlation(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                       valid: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Mean over samples of Pearson's r on hidden valid voxels.

    pred, target: (B, N, D) model output and regression target (``MAEOutput.pred/target``).
    mask: (B, N) bool, True = hidden; valid: (B, N) bool or None (all valid).
    Returns a 0-dim float32 tensor on the input's device (no host sync); samples without
    hidden valid tokens are left out of the mean (0 when none has any).
    """
    if pred.shape != target.shape or pred.dim() != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(f"need pred, target (B, N, D) and mask (B, N); got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, {tuple(mask.shape)}")
    hidden = mask if valid is None else mask & valid
    w = hidden.to(torch.float64)[..., None].expand(pred.shape)  # B N D
    p, t = pred.detach().double(), target.detach().double()
    n = w.sum((1, 2))  # B
    has = n > 0
    n = n.clamp(min=1)
    p = p - ((p * w).sum((1, 2)) / n)[:, None, None]
    t = t - ((t * w).sum((1, 2)) / n)[:, None, None]
    cov = (p * t * w).sum((1, 2))
    var_p, var_t = (p * p * w).sum((1, 2)), (t * t * w).sum((1, 2))
    r = torch.where((var_p > eps) & (var_t > eps), cov / (var_p * var_t).clamp(min=eps).sqrt(), 0.0)
    return ((r * has).sum() / has.sum().clamp(min=1)).float()


def hidden_gradient_correlation(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                                valid: torch.Tensor | None, patch_size: tuple[int, int, int],
                                channels: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """Mean over samples of Pearson's r between the within-patch voxel differences of the
    prediction and of the target, on hidden valid tokens: do the hidden patches draw the
    edges (boundaries) where the truth has them, with the right polarity?

    Differences are taken along each axis inside each patch (never across a patch seam),
    so a prediction that is flat inside each hidden patch scores 0 however right its level.
    pred, target: (B, N, px*py*pz*C); mask, valid: (B, N) bool. Returns a 0-dim float32 tensor.
    """
    dp = patch_differences(pred.detach().float(), patch_size, channels)
    dt = patch_differences(target.detach().float(), patch_size, channels)
    return hidden_correlation(dp, dt, mask, valid, eps)
