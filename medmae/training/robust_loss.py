"""A trimmed reconstruction loss: each crop's worst-reconstructed hidden voxels do not count.

When an MAE is pretrained on the patients' own unlabeled scans (no healthy scans of the same
protocol), lesions are in its training crops and a plain mean squared error teaches it to
reconstruct them, which is what the anomaly map must not do. With ``train.trim_fraction``
= f > 0 the loss of each crop is the mean squared error over its hidden, valid voxels
*except* the fraction f with the largest error (the threshold is the crop's own
(1 - f) quantile, without gradient). Rare tissue that the model cannot yet predict,
lesions first, then gets no pull; common tissue trains as before. The price: rare normal
structures are trimmed too, so keep f small (a few percent).
"""

from __future__ import annotations

import torch


def trimmed_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None,
                 trim_fraction: float) -> torch.Tensor:
    """pred, target (B, N, P*C); mask (B, N) bool hidden; valid (B, N) bool or None -> scalar loss.

    Mean of the squared voxel errors of the hidden (and valid) tokens, each crop's top
    ``trim_fraction`` of them left out; ``trim_fraction`` 0 gives the plain loss."""
    if not 0 <= trim_fraction < 1:
        raise ValueError(f"trim_fraction must be in [0, 1), got {trim_fraction}")
    err = (pred.float() - target.float()).pow(2)  # B N V
    scored = mask if valid is None else mask & valid
    keep = scored[..., None].expand_as(err).clone()
    if trim_fraction > 0:
        with torch.no_grad():
            for b in range(err.shape[0]):
                e = err[b][keep[b]]
                if e.numel() == 0:
                    continue
                k = max(1, int(torch.ceil(torch.tensor((1.0 - trim_fraction) * e.numel())).item()))
                threshold = torch.kthvalue(e, k).values
                keep[b] &= err[b] <= threshold
    return (err * keep).sum() / keep.sum().clamp(min=1)
