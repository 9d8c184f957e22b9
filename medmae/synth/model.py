"""What a phantom kind (brain, abdomen) defines: its labels, geometry, contrast and artefacts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from medmae.synth.shapes import Deformation


class AnatomyModel(ABC):
    """One random anatomy, drawn in ``__init__`` from the case's generator.

    Coordinates: ``p`` are RAS+ mm with the anatomy's centre at the origin (+x towards
    the patient's right, +y anterior, +z superior; so left organs have x < 0);
    ``q = self.warp(p)`` are the smoothly deformed points at which the label map is
    evaluated, so every case's organs are bent differently.
    """

    modality: ClassVar[str]
    sequence: ClassVar[str]
    labels: ClassVar[dict[int, str]]
    orientation: ClassVar[str]
    """Where the written voxel axes point ("RAS" or "LPS")."""
    max_rotation_deg: ClassVar[float]
    """Oblique tilt of the voxel grid about each axis (0 for axial CT)."""
    default_shape: ClassVar[tuple[int, int, int]]
    default_spacing: ClassVar[tuple[float, float, float]]
    lesion_host: ClassVar[int]
    """Label that lesions are placed in (and clipped to)."""
    lesion_radius_mm: ClassVar[tuple[float, float]]
    lesion_count: ClassVar[tuple[int, int]]
    mask_labels: ClassVar[tuple[int, ...]] = ()
    """Labels of the organ mask a user would supply (brain: the intracranial tissues, as a
    skull-stripping tool gives); empty when the kind has none."""

    warp: Deformation

    @abstractmethod
    def __init__(self, rng: np.random.Generator, extent_mm: np.ndarray):
        """Draw this case's anatomy; ``extent_mm`` (3,) bounds |p| over the rendered grid."""

    @abstractmethod
    def label_map(self, q: np.ndarray) -> np.ndarray:
        """(3, ...) deformed points -> (...) int16 labels."""

    @abstractmethod
    def mean_intensities(self, rng: np.random.Generator) -> dict[int, float]:
        """Mean intensity of every label in this case (label -> value)."""

    @abstractmethod
    def texture_sd(self, means: dict[int, float]) -> dict[int, float]:
        """Standard deviation of the smooth within-tissue texture of every label."""

    @abstractmethod
    def lesion_value(self, means: dict[int, float], rng: np.random.Generator) -> float:
        """Intensity of one lesion."""

    @abstractmethod
    def add_artefacts(self, image: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Bias field and noise on a slab: image (...) float32, points (3, ...) -> (...)."""

    @abstractmethod
    def world_centre(self, rng: np.random.Generator) -> np.ndarray:
        """(3,) RAS mm position of the anatomy's origin in the scanner's world."""

    def lut(self, values: dict[int, float]) -> np.ndarray:
        """Lookup table (max label + 1,) float32 from a label -> value dict (0 elsewhere)."""
        out = np.zeros(max(self.labels) + 1, dtype=np.float32)
        for k, v in values.items():
            out[k] = v
        return out
