"""Acquisition artefacts: partial-volume blur, smooth bias fields, Rician and Gaussian noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medmae.synth.shapes import SmoothNoise


def partial_volume(image: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Blur hard tissue edges as a finite point-spread function does: (X, Y, Z) -> same."""
    if sigma_vox <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma=sigma_vox, mode="nearest")


class BiasField:
    """A smooth field around 1 (MR receive-coil shading) or 0 (CT beam-hardening drift).

    ``multiplicative``: ``exp(strength * n(p))``; otherwise ``strength * n(p)``, with
    ``n`` a unit smooth noise correlated over ``scale_mm``.
    """

    def __init__(self, rng: np.random.Generator, extent_mm: np.ndarray | float, strength: float,
                 scale_mm: float = 80.0, multiplicative: bool = True):
        self.noise = SmoothNoise(rng, extent_mm, scale_mm)
        self.strength = float(strength)
        self.multiplicative = multiplicative

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """(3, ...) points -> (...) field values."""
        v = self.strength * self.noise(p)
        return np.exp(v) if self.multiplicative else v


def rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise on both channels (MR): same shape."""
    re = signal + rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    im = rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    return np.sqrt(re * re + im * im)


def gaussian_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise (CT after reconstruction, to first order): same shape."""
    return signal + rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
