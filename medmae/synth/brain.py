"""A T1-weighted head phantom: scalp, skull, CSF, folded cortex, white matter, deep grey
matter and lateral ventricles, the paired structures mirrored about the midline."""

from __future__ import annotations

import numpy as np

from medmae.synth.artefacts import BiasField, rician_noise
from medmae.synth.model import AnatomyModel
from medmae.synth.shapes import (Deformation, SmoothNoise, ellipsoid, ellipsoid_depth,
                                 mirror_x, rotation_matrix)

BACKGROUND, CSF, GREY, WHITE, DEEP_GREY, VENTRICLE, SKULL, SCALP = range(8)

BRAIN_LABELS = {
    BACKGROUND: "background", CSF: "csf", GREY: "grey_matter", WHITE: "white_matter",
    DEEP_GREY: "deep_grey_matter", VENTRICLE: "lateral_ventricles", SKULL: "skull", SCALP: "scalp",
}

# T1-weighted signal (arbitrary scanner units), before per-case jitter.
T1_MEANS = {BACKGROUND: 0.0, CSF: 260.0, GREY: 600.0, WHITE: 850.0, DEEP_GREY: 690.0,
            VENTRICLE: 230.0, SKULL: 120.0, SCALP: 930.0}


class BrainModel(AnatomyModel):
    modality = "MR"
    sequence = "T1"
    labels = BRAIN_LABELS
    orientation = "RAS"
    max_rotation_deg = 8.0
    default_shape = (96, 96, 96)
    default_spacing = (2.0, 2.0, 2.0)
    lesion_host = WHITE
    lesion_radius_mm = (5.0, 10.0)
    lesion_count = (1, 4)
    mask_labels = (CSF, GREY, WHITE, DEEP_GREY, VENTRICLE)

    def __init__(self, rng: np.random.Generator, extent_mm: np.ndarray):
        s = rng.uniform(0.9, 1.02)
        self.brain = s * np.array([58.0, 74.0, 54.0]) * rng.uniform(0.96, 1.04, size=3)
        self.csf_mm = rng.uniform(2.5, 4.5)
        self.skull_mm = rng.uniform(5.0, 7.0)
        self.scalp_mm = rng.uniform(4.0, 6.0)
        self.cortex_mm = rng.uniform(4.0, 6.0)
        self.folds = SmoothNoise(rng, extent_mm, scale_mm=12.0)
        self.warp = Deformation(rng, extent_mm, scale_mm=40.0, amplitude_mm=3.0)
        v = rng.uniform(0.8, 1.4)
        self.ventricle = (s * np.array([9.0, 4.0, 13.0]), s * np.array([5.0 * v, 24.0, 8.0 * v]),
                          rotation_matrix([0.0, 0.0, rng.uniform(5.0, 12.0)]))
        self.deep = (s * np.array([21.0, -4.0, 0.0]), s * np.array([9.0, 15.0, 10.0]) * rng.uniform(0.9, 1.1),
                     rotation_matrix([0.0, 0.0, -rng.uniform(10.0, 20.0)]))
        self.bias = BiasField(rng, extent_mm, strength=rng.uniform(0.08, 0.2), multiplicative=True)
        self.noise_sd = rng.uniform(12.0, 25.0)

    def label_map(self, q: np.ndarray) -> np.ndarray:
        """(3, ...) -> (...) int16 tissue classes."""
        zero = (0.0, 0.0, 0.0)
        lab = np.zeros(q.shape[1:], dtype=np.int16)
        lab[ellipsoid(q, zero, self.brain + self.csf_mm + self.skull_mm + self.scalp_mm)] = SCALP
        lab[ellipsoid(q, zero, self.brain + self.csf_mm + self.skull_mm)] = SKULL
        lab[ellipsoid(q, zero, self.brain + self.csf_mm)] = CSF
        depth = ellipsoid_depth(q, zero, self.brain)
        fold = self.folds(q)
        sulcus = depth < 12.0 * np.clip(fold - 0.3, 0.0, None)
        fissure = (np.abs(q[0]) < 1.5) & (q[2] > -20.0)
        grey = (depth > 0) & ~sulcus & ~fissure
        lab[grey] = GREY
        lab[grey & (depth > self.cortex_mm + 5.0 * np.clip(fold + 0.3, 0.0, None))] = WHITE
        for side in (1.0, -1.0):  # right (+x), then the mirrored left
            for (centre, radii, rot), value in ((self.deep, DEEP_GREY), (self.ventricle, VENTRICLE)):
                c = centre * np.array([side, 1.0, 1.0])
                r = rot if side > 0 else mirror_x(rot)
                lab[ellipsoid(q, c, radii, r)] = value
        return lab

    def mean_intensities(self, rng: np.random.Generator) -> dict[int, float]:
        gain = rng.uniform(0.85, 1.15)
        return {k: v * gain * rng.uniform(0.95, 1.05) for k, v in T1_MEANS.items()}

    def texture_sd(self, means: dict[int, float]) -> dict[int, float]:
        return {k: 0.03 * v for k, v in means.items()}

    def lesion_value(self, means: dict[int, float], rng: np.random.Generator) -> float:
        """Bright (enhancing, 1.4-1.7x white matter) or dark (a T1 'black hole', 0.25-0.4x white
        matter: near CSF signal, below grey matter, so it is not a grey-matter island)."""
        factor = rng.uniform(1.4, 1.7) if rng.random() < 0.5 else rng.uniform(0.25, 0.4)
        return means[WHITE] * factor

    def add_artefacts(self, image: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rician_noise(image * self.bias(p), self.noise_sd, rng)

    def world_centre(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([0.0, -18.0, 12.0]) + rng.uniform(-5.0, 5.0, size=3)
