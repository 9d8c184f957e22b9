"""The mean-predictor loss: what the masked-token loss is read against (called "baseline" before;
renamed so it is not confused with the anomaly head's intensity baseline detector).

A model that learned nothing about structure can still predict a constant per token:

* ``norm_pix_loss=True`` -- targets are normalised per token (zero mean, unit variance),
  so predicting each token's own mean (0 in target space) scores ``mean(target**2)``:
  (P-1)/P ~ 1.0 for a token with any texture, 0 for a perfectly flat one.
* ``norm_pix_loss=False`` -- predicting, for every hidden voxel, the mean intensity of the
  sample's visible tokens (all the encoder sees) scores ``mean((target - m_visible)**2)``.

Both are averaged like the loss: over the hidden, valid tokens of the batch. A loss well
below this number means the model predicts structure, not just an intensity level.
"""

from __future__ import annotations

import torch


def mean_predictor_loss(target: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None,
                  norm_pix_loss: bool) -> torch.Tensor:
    """Baseline MSE over hidden valid tokens.

    target: (B, N, D) what the loss compares against (normalised when ``norm_pix_loss``).
    mask:   (B, N) bool, True = hidden.
    valid:  (B, N) bool or None (all valid).
    Returns a 0-dim float tensor (no sync with the device).
    """
    target = target.detach().float()
    valid = torch.ones_like(mask) if valid is None else valid
    hidden = (mask & valid).float()  # B N
    if norm_pix_loss:
        per_token = target.pow(2).mean(-1)
    else:
        visible = (valid & ~mask).float()  # B N
        m_vis = (target.mean(-1) * visible).sum(1) / visible.sum(1).clamp_min(1)  # B
        per_token = (target - m_vis[:, None, None]).pow(2).mean(-1)
    return (per_token * hidden).sum() / hidden.sum().clamp_min(1)
