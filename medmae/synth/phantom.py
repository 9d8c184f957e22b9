"""Render one phantom case: label map, lesions, intensities and artefacts on a voxel grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medmae.synth.abdomen import AbdomenModel
from medmae.synth.artefacts import partial_volume
from medmae.synth.brain import BrainModel
from medmae.synth.grid import make_affine, slabs, world_points
from medmae.synth.lesions import Lesion, place_lesions
from medmae.synth.model import AnatomyModel
from medmae.synth.shapes import SmoothNoise, random_rotation

KINDS: dict[str, type[AnatomyModel]] = {"brain": BrainModel, "abdomen": AbdomenModel}


@dataclass
class Phantom:
    """One generated case.

    image:   (X, Y, Z) int16 (MR signal, or CT HU).
    anatomy: (X, Y, Z) int16 tissue / organ ids (see ``labels``).
    lesion:  (X, Y, Z) uint8, 1 inside a lesion, or None when lesions were not asked for.
    affine:  (4, 4) voxel -> RAS mm.
    """

    image: np.ndarray
    anatomy: np.ndarray
    lesion: np.ndarray | None
    affine: np.ndarray
    modality: str
    sequence: str
    labels: dict[int, str]
    lesions: list[Lesion] = field(default_factory=list)
    mask_labels: tuple[int, ...] = ()
    """Anatomy labels of the kind's organ mask (brain: intracranial tissues), see ``mask``."""

    @property
    def mask(self) -> np.ndarray:
        """(X, Y, Z) uint8 organ mask (brain phantoms: the brain with its CSF, skull stripped)."""
        if not self.mask_labels:
            raise ValueError("this phantom kind has no organ mask (only brain phantoms do)")
        return np.isin(self.anatomy, self.mask_labels).astype(np.uint8)


def default_grid(kind: str, shape: Sequence[int] | None, spacing: Sequence[float] | None
                 ) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing to render: the kind's defaults; a shape alone keeps the default
    field of view (spacing = default FOV / shape), a spacing alone keeps the default shape."""
    model = _model_class(kind)
    if shape is None:
        shape = model.default_shape
    elif spacing is None:
        fov = np.multiply(model.default_shape, model.default_spacing)
        spacing = tuple(float(f / n) for f, n in zip(fov, shape))
    spacing = model.default_spacing if spacing is None else spacing
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes >= 8, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive sizes (mm), got {spacing}")
    return shape, spacing


def _model_class(kind: str) -> type[AnatomyModel]:
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind]


def make_phantom(kind: str, rng: np.random.Generator, shape: Sequence[int] | None = None,
                 spacing: Sequence[float] | None = None, lesions: bool = False) -> Phantom:
    """Draw a random anatomy of ``kind`` and render it (see :class:`Phantom`)."""
    shape, spacing = default_grid(kind, shape, spacing)
    cls = _model_class(kind)
    rotation = random_rotation(rng, cls.max_rotation_deg)
    extent = np.abs(rotation) @ (np.multiply(shape, spacing) / 2.0) + 25.0  # |p| bound, with warp margin
    model = cls(rng, extent)
    centre = model.world_centre(rng)
    affine = make_affine(shape, spacing, model.orientation, rotation, centre)
    texture = SmoothNoise(rng, extent, scale_mm=8.0)
    means = model.mean_intensities(rng)
    mean_lut, sd_lut = model.lut(means), model.lut(model.texture_sd(means))
    placed = _place(model, rng, affine, shape, spacing, centre, means) if lesions else []

    anatomy = np.empty(shape, dtype=np.int16)
    lesion = np.zeros(shape, dtype=np.uint8)
    image = np.empty(shape, dtype=np.float32)
    for x0, x1 in slabs(shape):
        p = world_points(affine, shape, x0, x1) - centre.astype(np.float32).reshape(3, 1, 1, 1)
        q = model.warp(p)
        lab = model.label_map(q)
        img = mean_lut[lab] + sd_lut[lab] * texture(q)
        for les in placed:
            inside = les.inside(p) & (lab == model.lesion_host)
            img[inside] = les.value
            lesion[x0:x1][inside] = 1
        anatomy[x0:x1], image[x0:x1] = lab, img
    image = partial_volume(image, sigma_vox=0.6)
    for x0, x1 in slabs(shape):
        p = world_points(affine, shape, x0, x1) - centre.astype(np.float32).reshape(3, 1, 1, 1)
        image[x0:x1] = model.add_artefacts(image[x0:x1], p, rng)
    info = np.iinfo(np.int16)
    image = np.clip(np.rint(image), info.min, info.max).astype(np.int16)
    return Phantom(image, anatomy, lesion if lesions else None, affine, model.modality, model.sequence,
                   dict(model.labels), placed, tuple(model.mask_labels))


def _place(model: AnatomyModel, rng: np.random.Generator, affine: np.ndarray, shape: Sequence[int],
           spacing: Sequence[float], centre: np.ndarray, means: dict[int, float]) -> list[Lesion]:
    """Lesions at random voxels of the host, at least 1.5 voxels in radius."""
    idx = np.stack([rng.integers(0, n, size=4000) for n in shape]).astype(np.float64)
    candidates = (affine[:3, :3] @ idx + affine[:3, 3:4] - centre[:, None]).astype(np.float32)
    lo, hi = model.lesion_radius_mm
    lo = max(lo, 1.5 * max(spacing))
    count = int(rng.integers(model.lesion_count[0], model.lesion_count[1] + 1))
    return place_lesions(lambda p: model.label_map(model.warp(p)), model.lesion_host, candidates, count,
                         (lo, max(lo, hi)), lambda: model.lesion_value(means, rng), rng)
