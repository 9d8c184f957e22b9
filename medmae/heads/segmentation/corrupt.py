"""Seeded image corruptions for the robustness evaluation, on preprocessed (C, X, Y, Z) images.

Each kind has one strength knob, 0 = unchanged:

    noise     Gaussian noise, std = strength (in normalised intensity units; TorchIO RandomNoise)
    bias      smooth multiplicative bias field, polynomial coefficients drawn in
              [-strength, strength] (TorchIO RandomBiasField, order 3)
    motion    two rigid movements during acquisition of up to ``strength`` degrees and
              ``strength`` mm each (TorchIO RandomMotion: k-space composition)
    ghosting  4 ghosts along axis 1 of relative intensity ``strength`` (TorchIO RandomGhosting)
    cubes     occluding cubes (side 1/8 of the shortest image side) filled with the image
              minimum until ``strength`` of the volume is covered (as MONAI RandCoarseDropout,
              but to a set coverage)
    lowres    thicker slices: axis 2 downsampled by ``strength`` (>= 1) and resampled back
              (TorchIO RandomAnisotropy)

The same (image, kind, strength, seed) always gives the same output; the global random
state is left as it was.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

KINDS = ("noise", "bias", "motion", "ghosting", "cubes", "lowres")


def _torchio(image: np.ndarray, transform, spacing: Sequence[float], seed: int) -> np.ndarray:
    import torchio as tio

    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(np.array(image, dtype=np.float32)),
                                                affine=np.diag([*map(float, spacing), 1.0])))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        out = transform(subject)
    return out["image"].data.numpy().astype(np.float32)


def _cubes(image: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Cubes (side 1/8 of the shortest side) at seeded random places, filled with the image
    minimum, added until at least ``fraction`` of the voxels are covered (MONAI's
    RandCoarseDropout draws a fixed number of holes instead, so its coverage varies)."""
    rng = np.random.default_rng(int(seed))
    out = np.array(image, dtype=np.float32)
    shape = np.array(image.shape[1:])
    side = max(1, int(shape.min()) // 8)
    covered = np.zeros(tuple(shape), dtype=bool)
    target = fraction * covered.size
    while covered.sum() < target:
        lo = rng.integers(0, shape - side + 1)
        covered[tuple(slice(a, a + side) for a in lo)] = True
    out[:, covered] = float(image.min())
    return out


def corrupt(image: np.ndarray, kind: str, strength: float, seed: int,
            spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """(C, X, Y, Z) -> the same shape, corrupted (see the module docstring); a copy at strength 0."""
    if kind not in KINDS:
        raise ValueError(f"unknown corruption {kind!r} (one of {', '.join(KINDS)})")
    if strength < 0 or (kind == "lowres" and 0 < strength < 1):
        raise ValueError(f"{kind} strength must be >= 0 (lowres: >= 1), got {strength}")
    if strength == 0 or (kind == "lowres" and strength == 1):
        return np.array(image, dtype=np.float32)
    import torchio as tio

    s = float(strength)
    if kind == "cubes":
        return _cubes(image, min(s, 1.0), seed)
    transform = {
        "noise": lambda: tio.RandomNoise(mean=0.0, std=(s, s)),
        "bias": lambda: tio.RandomBiasField(coefficients=s, order=3),
        "motion": lambda: tio.RandomMotion(degrees=s, translation=s, num_transforms=2),
        "ghosting": lambda: tio.RandomGhosting(num_ghosts=4, axes=(1,), intensity=(s, s)),
        "lowres": lambda: tio.RandomAnisotropy(axes=(2,), downsampling=(s, s)),
    }[kind]()
    return _torchio(image, transform, spacing, seed)
