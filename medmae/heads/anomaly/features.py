"""A feature-space anomaly map from the pretrained encoder (PatchCore-style; issue 20, item 4).

Every token of a window is encoded with nothing hidden; its feature vector (the encoder's
final normalised output, L2-normalised) is compared with a memory bank of token features
from reference scans (healthy scans, or the training scans), and its anomaly value is the
distance to the nearest bank token. Before the comparison each feature is centred by the
bank's mean feature at the same token position in the window: the sin-cos position code
otherwise dominates the features, and a token would match the bank tokens at its window
position rather than those of its tissue. Token values are upsampled trilinearly to the window's
voxels, and MONAI's sliding-window inference blends the windows (Gaussian) into a voxel map.

The bank: every token whose body fraction reaches ``min_body_fraction`` in windows tiled at
half the window size over each reference scan, then a seeded random subsample of at most
``max_tokens`` (PatchCore's coreset, approximated by a random one). Windows of the training
crop size keep the encoder in the setting it was trained in; the sin-cos position code makes
a token's features depend on its place in the window, and the half-window tiling puts every
place of the bank's windows on every part of the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from medmae.export.pretrained import PretrainedMAE
from medmae.tokens import token_fraction

MAX_BANK_TOKENS = 50000


@dataclass
class FeatureBank:
    """tokens: (M, D) centred, L2-normalised bank features; centre: (N, D) mean raw feature per
    token position of a window."""

    tokens: torch.Tensor
    centre: torch.Tensor
    inputs: frozenset[str] = field(default_factory=frozenset)
    """sha256 of the reference scans' images (identity.image_digest): a scan among them is
    in-sample for the feature map (its own tokens are in the bank)."""

    def prepare(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, N, D) raw window features -> (B, N, D) centred by position, L2-normalised."""
        return F.normalize(feats - self.centre, dim=-1)


def _encode(model: PretrainedMAE, roi: tuple[int, int, int], x: torch.Tensor) -> torch.Tensor:
    """(B, C, *roi) -> (B, N, D) raw token features (the encoder's normalised output)."""
    return model.build(roi).encoder(x)


def _pad(image: np.ndarray, roi: tuple[int, ...], fill: list[float]) -> np.ndarray:
    shape = [max(s, r) for s, r in zip(image.shape[1:], roi)]
    pad = [(0, t - s) for s, t in zip(image.shape[1:], shape)]
    return np.stack([np.pad(image[c], pad, constant_values=fill[c]) for c in range(image.shape[0])])


def bank_features(images: list[tuple[np.ndarray, np.ndarray, list[float]]], model: PretrainedMAE,
                  min_body_fraction: float = 0.5, max_tokens: int = MAX_BANK_TOKENS, seed: int = 0) -> FeatureBank:
    """[(C, X, Y, Z) image, (X, Y, Z) body, per-channel pad floors] -> the bank of token features."""
    roi = tuple(model.crop)
    out, where = [], []
    for image, body, floors in images:
        img = _pad(image, roi, floors)
        msk = _pad(body[None].astype(np.float32), roi, [0.0])[0]
        starts = [sorted({*range(0, s - r + 1, r // 2), s - r}) for s, r in zip(img.shape[1:], roi)]
        with torch.no_grad():
            for i in starts[0]:
                for j in starts[1]:
                    for k in starts[2]:
                        sl = (slice(i, i + roi[0]), slice(j, j + roi[1]), slice(k, k + roi[2]))
                        m = torch.from_numpy(np.ascontiguousarray(msk[sl]))[None, None]
                        keep = token_fraction(m, model.patch_size)[0] >= min_body_fraction
                        if keep.any():
                            x = torch.from_numpy(np.ascontiguousarray(img[(slice(None), *sl)]))[None].float()
                            out.append(_encode(model, roi, x)[0][keep])
                            where.append(torch.nonzero(keep)[:, 0])
    if not out:
        raise ValueError("no reference token has enough body: the feature bank would be empty")
    feats, pos = torch.cat(out), torch.cat(where)
    n = int(np.prod([r // p for r, p in zip(roi, model.patch_size)]))
    count = torch.zeros(n).index_add_(0, pos, torch.ones(pos.shape[0]))
    centre = torch.zeros(n, feats.shape[1]).index_add_(0, pos, feats)
    centre = torch.where(count[:, None] > 0, centre / count.clamp(min=1)[:, None], feats.mean(0))
    bank = FeatureBank(F.normalize(feats - centre[pos], dim=-1), centre)
    if feats.shape[0] > max_tokens:
        g = torch.Generator().manual_seed(seed)
        bank.tokens = bank.tokens[torch.randperm(feats.shape[0], generator=g)[:max_tokens]]
    return bank


def nearest_distance(feats: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, D), (M, D) -> (N,) Euclidean distance of each feature to its nearest bank feature."""
    return torch.cat([torch.cdist(feats[i:i + chunk], bank).min(1).values for i in range(0, feats.shape[0], chunk)]) \
        if feats.shape[0] else feats.new_zeros(0)


def feature_map(image: np.ndarray, body: np.ndarray, floors: list[float], model: PretrainedMAE,
                bank: FeatureBank, overlap: float = 0.25) -> np.ndarray:
    """(C, X, Y, Z) preprocessed scan -> (X, Y, Z) nearest-bank distance map, 0 outside the body."""
    roi = tuple(model.crop)
    grid = tuple(r // p for r, p in zip(roi, model.patch_size))

    def window(x: torch.Tensor) -> torch.Tensor:
        feats = bank.prepare(_encode(model, roi, x))
        d = nearest_distance(feats.reshape(-1, feats.shape[-1]), bank.tokens).reshape(x.shape[0], 1, *grid)
        return F.interpolate(d, size=roi, mode="trilinear", align_corners=False)

    img = _pad(image, roi, floors)
    with torch.no_grad():
        out = sliding_window_inference(torch.from_numpy(np.ascontiguousarray(img))[None].float(), roi, 2, window,
                                       overlap=overlap, mode="gaussian", progress=False)
    X, Y, Z = image.shape[1:]
    return np.where(body, out[0, 0, :X, :Y, :Z].numpy(), 0.0).astype(np.float32)
