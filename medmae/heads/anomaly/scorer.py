"""Score one preprocessed volume: sliding windows x mask draws -> per-voxel error statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medmae.device import pick_device
from medmae.heads.anomaly.config import ScoreConfig
from medmae.export.pretrained import PretrainedMAE
from medmae.heads.anomaly.window import DrawPlan, WindowScorer


@dataclass
class ErrorStats:
    """Per-voxel statistics over the draws that hid each voxel, on the preprocessed grid.

    residual: (C, X, Y, Z) mean of e = observed - expected (signed).
    squared:  (C, X, Y, Z) mean of e^2.
    spread:   (C, X, Y, Z) standard deviation of e over the draws.
    expected: (C, X, Y, Z) mean reconstruction.
    covered:  (X, Y, Z) bool, hidden in at least one draw of some window.
    """

    residual: np.ndarray
    squared: np.ndarray
    spread: np.ndarray
    expected: np.ndarray
    covered: np.ndarray


def resolve_roi(cfg: ScoreConfig, model: PretrainedMAE, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The window size in voxels (multiples of the patch size)."""
    patch = model.patch_size
    roi = cfg.roi
    if roi == "auto":
        roi = "crop" if cfg.mask == "random" else "whole"
    if roi == "crop":
        return tuple(model.crop)
    if roi == "whole":
        return tuple(int(-(-s // p) * p) for s, p in zip(shape, patch))
    if any(r % p for r, p in zip(roi, patch)):
        raise ValueError(f"score.roi {tuple(roi)} is not a multiple of the patch size {patch}")
    return tuple(int(r) for r in roi)


def draw_plan(cfg: ScoreConfig, model: PretrainedMAE, only: tuple[int, ...] | None = None) -> DrawPlan:
    ratio = cfg.ratio if cfg.ratio is not None else model.ratio
    frac = cfg.min_body_fraction if cfg.min_body_fraction is not None else (
        model.min_fraction if model.foreground_only else 0.0)
    return DrawPlan(structured=cfg.mask != "random", draws=cfg.draws, ratio=ratio, min_fraction=frac,
                    seed=cfg.seed, only=only)


def _pad_to(arr: np.ndarray, shape: tuple[int, int, int], fill: float) -> np.ndarray:
    """(C, X, Y, Z) padded at the far end of each axis up to ``shape`` with ``fill``."""
    pad = [(0, 0)] + [(0, max(0, t - s)) for s, t in zip(arr.shape[1:], shape)]
    return np.pad(arr, pad, constant_values=fill) if any(p[1] for p in pad) else arr


def window_sums(image: np.ndarray, body: np.ndarray, units: np.ndarray | None, model: PretrainedMAE,
                cfg: ScoreConfig, floors: list[float], only: tuple[int, ...] | None = None) -> np.ndarray:
    """(C, X, Y, Z) image -> (3C + 1, X, Y, Z) blended sums (see medmae.heads.anomaly.window)."""
    device = pick_device(cfg.device)
    roi = resolve_roi(cfg, model, image.shape[1:])
    shape = tuple(max(s, r) for s, r in zip(image.shape[1:], roi))
    img = np.concatenate([_pad_to(image[c:c + 1], shape, floors[c]) for c in range(image.shape[0])])
    extra = np.stack([body.astype(np.float32), np.zeros(body.shape, np.float32) if units is None else units.astype(np.float32)])
    x = np.concatenate([img, _pad_to(extra, shape, 0.0)])
    dtype = torch.bfloat16 if cfg.precision == "bf16" and device.type == "cuda" else None
    scorer = WindowScorer(model.build(roi, device), draw_plan(cfg, model, only), dtype)
    with torch.no_grad():
        out = sliding_window_inference(torch.from_numpy(np.ascontiguousarray(x))[None].to(device), roi,
                                       cfg.sw_batch_size, scorer, overlap=cfg.overlap, mode="gaussian",
                                       progress=False)
    X, Y, Z = image.shape[1:]
    return out[0, :, :X, :Y, :Z].float().cpu().numpy()


def stats_from_sums(sums: np.ndarray, channels: int) -> ErrorStats:
    """(3C + 1, X, Y, Z) blended sums -> :class:`ErrorStats` (zeros where never hidden)."""
    c = channels
    n = sums[3 * c]
    covered = n > 1e-6
    safe = np.where(covered, n, 1.0)
    residual = np.where(covered, sums[:c] / safe, 0.0).astype(np.float32)
    squared = np.where(covered, sums[c:2 * c] / safe, 0.0).astype(np.float32)
    expected = np.where(covered, sums[2 * c:3 * c] / safe, 0.0).astype(np.float32)
    spread = np.sqrt(np.maximum(squared - residual ** 2, 0.0)).astype(np.float32)
    return ErrorStats(residual, squared, spread, expected, covered)


def score_volume(image: np.ndarray, body: np.ndarray, units: np.ndarray | None, model: PretrainedMAE,
                 cfg: ScoreConfig, floors: list[float]) -> ErrorStats:
    """One preprocessed (C, X, Y, Z) image, its body mask and unit map -> :class:`ErrorStats`."""
    if image.shape[0] != model.in_channels:
        raise ValueError(f"image has {image.shape[0]} channels, the model takes {model.in_channels}")
    return stats_from_sums(window_sums(image, body, units, model, cfg, floors), image.shape[0])
