"""Modality-aware intensity normalisation, one channel at a time.

CT: clip to an HU window, scale linearly to [0, 1].
MR: clip to percentiles of the body's intensities, then z-score inside the body.
Each function returns the normalised channel and the parameters that undo it
(recorded in meta.json), including ``floor``: the lowest value it can produce, used as
the padding value.
"""

from __future__ import annotations

import numpy as np

from medmae.preprocess.config import CTIntensity, MRIntensity


def ct_window(channel: np.ndarray, cfg: CTIntensity) -> tuple[np.ndarray, dict]:
    """(X, Y, Z) HU -> float32 in [0, 1]; ``hu = lo + value * (hi - lo)`` inverts it."""
    lo, hi = cfg.window
    out = (np.clip(channel, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32), {"kind": "ct_window", "window": [lo, hi], "floor": 0.0}


def mr_zscore(channel: np.ndarray, body: np.ndarray, cfg: MRIntensity) -> tuple[np.ndarray, dict]:
    """(X, Y, Z) raw MR -> float32 z-scores (mean 0, std 1 over ``body`` after clipping).

    ``raw = value * std + mean`` inverts it inside the clip range.
    Raises ValueError when the body's intensities are constant.
    """
    inside = channel[body]
    lo, hi = (float(v) for v in np.percentile(inside, cfg.percentiles))
    clipped = np.clip(channel, lo, hi)
    mean, std = float(clipped[body].mean()), float(clipped[body].std())
    if not std > 0:
        raise ValueError(f"constant intensity ({mean:g}) inside the body: cannot z-score")
    out = ((clipped - mean) / std).astype(np.float32)
    return out, {"kind": "zscore", "clip": [lo, hi], "mean": mean, "std": std,
                 "floor": (lo - mean) / std}


def normalise(image: np.ndarray, body: np.ndarray, modality: str,
              ct: CTIntensity, mr: MRIntensity) -> tuple[np.ndarray, list[dict]]:
    """(C, X, Y, Z) raw -> (C, X, Y, Z) float32 normalised, and per-channel parameters."""
    out = np.empty(image.shape, dtype=np.float32)
    params = []
    for c, channel in enumerate(image):
        out[c], p = ct_window(channel, ct) if modality == "CT" else mr_zscore(channel, body, mr)
        params.append(p)
    return out, params
