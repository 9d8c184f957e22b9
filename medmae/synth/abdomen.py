"""A non-contrast abdominal CT phantom in Hounsfield units.

Organs carry TotalSegmentator v2 ``total`` ids (1 spleen, 2 kidney_right, 3 kidney_left,
5 liver, ... 27-34 vertebrae L5-T10, 52 aorta, 63 inferior_vena_cava); tissues that
TotalSegmentator's ``total`` task does not label get ids from 200 up.
"""

from __future__ import annotations

import numpy as np

from medmae.synth.artefacts import BiasField, gaussian_noise
from medmae.synth.model import AnatomyModel
from medmae.synth.shapes import (Deformation, SmoothNoise, ellipse_depth_xy, ellipsoid,
                                 mirror_x, rotation_matrix, tube)

SPLEEN, KIDNEY_R, KIDNEY_L, GALLBLADDER, LIVER, STOMACH, PANCREAS = 1, 2, 3, 4, 5, 6, 7
LUNG_L, LUNG_R, SMALL_BOWEL, COLON, BLADDER = 11, 14, 18, 20, 21
AORTA, IVC, CORD, AUTOCHTHON_L, AUTOCHTHON_R, PSOAS_L, PSOAS_R = 52, 63, 79, 86, 87, 88, 89
FAT, MUSCLE, VISCERAL_FAT, GAS, DISC = 200, 201, 202, 203, 204
VERTEBRA_L1 = 31
_LEVELS = ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4"]
VERTEBRAE = {26 + i: f"vertebrae_{name}" for i, name in enumerate(_LEVELS)}

ABDOMEN_LABELS = {
    0: "background", SPLEEN: "spleen", KIDNEY_R: "kidney_right", KIDNEY_L: "kidney_left",
    GALLBLADDER: "gallbladder", LIVER: "liver", STOMACH: "stomach", PANCREAS: "pancreas",
    LUNG_L: "lung_lower_lobe_left", LUNG_R: "lung_lower_lobe_right", SMALL_BOWEL: "small_bowel",
    COLON: "colon", BLADDER: "urinary_bladder", **VERTEBRAE, AORTA: "aorta",
    IVC: "inferior_vena_cava", CORD: "spinal_cord", AUTOCHTHON_L: "autochthon_left",
    AUTOCHTHON_R: "autochthon_right", PSOAS_L: "iliopsoas_left", PSOAS_R: "iliopsoas_right",
    FAT: "subcutaneous_fat", MUSCLE: "abdominal_wall_muscle", VISCERAL_FAT: "visceral_fat",
    GAS: "bowel_gas", DISC: "intervertebral_disc",
}

# Non-contrast CT, HU, before per-case jitter.
HU_MEANS = {
    0: -1000.0, SPLEEN: 48.0, KIDNEY_R: 32.0, KIDNEY_L: 32.0, GALLBLADDER: 8.0, LIVER: 60.0,
    STOMACH: 25.0, PANCREAS: 42.0, LUNG_L: -850.0, LUNG_R: -850.0, SMALL_BOWEL: 30.0, COLON: 15.0,
    BLADDER: 5.0, **{v: 330.0 for v in VERTEBRAE}, AORTA: 42.0, IVC: 40.0, CORD: 30.0,
    AUTOCHTHON_L: 50.0, AUTOCHTHON_R: 50.0, PSOAS_L: 50.0, PSOAS_R: 50.0, FAT: -100.0,
    MUSCLE: 48.0, VISCERAL_FAT: -95.0, GAS: -980.0, DISC: 85.0,
}


class AbdomenModel(AnatomyModel):
    modality = "CT"
    sequence = ""
    labels = ABDOMEN_LABELS
    orientation = "LPS"
    max_rotation_deg = 0.0
    default_shape = (128, 96, 64)
    default_spacing = (3.0, 3.0, 3.5)
    lesion_host = LIVER
    lesion_radius_mm = (5.0, 14.0)
    lesion_count = (1, 3)

    def __init__(self, rng: np.random.Generator, extent_mm: np.ndarray):
        s = self.s = rng.uniform(0.88, 1.05)
        self.body = s * np.array([150.0, 108.0]) * rng.uniform(0.95, 1.05, size=2)
        self.fat_mm = rng.uniform(5.0, 22.0)
        self.wall_mm = rng.uniform(8.0, 14.0)
        self.yv = -0.38 * self.body[1]  # vertebral body centre (posterior)
        self.z_l1 = rng.uniform(-15.0, 15.0)
        self.period = 34.0 * s
        self.warp = Deformation(rng, extent_mm, scale_mm=60.0, amplitude_mm=6.0)
        self.loops = SmoothNoise(rng, extent_mm, scale_mm=14.0)
        self.gas = SmoothNoise(rng, extent_mm, scale_mm=10.0)
        self.gas_level = rng.uniform(0.35, 0.7)
        j = lambda: rng.uniform(0.9, 1.1, size=3)  # noqa: E731 - organ size jitter
        z = self.z_l1
        self.liver = (s * np.array([62.0, 8.0, z / s + 62.0]), s * np.array([95.0, 88.0, 78.0]) * j(),
                      rotation_matrix([0.0, rng.uniform(-5, 5), rng.uniform(-20, -10)]))
        self.spleen = (s * np.array([-85.0, -35.0, z / s + 62.0]), s * np.array([30.0, 52.0, 45.0]) * j(),
                       rotation_matrix([0.0, 0.0, rng.uniform(22, 38)]))
        self.kidney = (s * np.array([62.0, 0.0, 0.0]) + np.array([0.0, self.yv - 8.0, z]),
                       s * np.array([28.0, 24.0, 55.0]) * j(),
                       rotation_matrix([0.0, rng.uniform(-20, -10), rng.uniform(-30, -20)]))
        self.right_kidney_drop = rng.uniform(10.0, 30.0)
        self.stomach = (s * np.array([-45.0, 42.0, z / s + 55.0]), s * np.array([48.0, 32.0, 42.0]) * j(),
                        rotation_matrix([0.0, 0.0, rng.uniform(15, 35)]))
        self.gallbladder = (s * np.array([48.0, 40.0, z / s + 12.0]), s * np.array([14.0, 13.0, 28.0]) * j(),
                            rotation_matrix([20.0, 0.0, 0.0]))
        self.pancreas = (np.array([-15.0 * s, self.yv + 52.0 * s, z + 18.0 * s]),
                         s * np.array([65.0, 11.0, 13.0]) * j(), rotation_matrix([0.0, 0.0, rng.uniform(5, 18)]))
        self.bias = BiasField(rng, extent_mm, strength=rng.uniform(3.0, 8.0), scale_mm=120.0, multiplicative=False)
        self.noise_sd = rng.uniform(8.0, 16.0)

    # -- geometry ---------------------------------------------------------------------------

    def label_map(self, q: np.ndarray) -> np.ndarray:
        """(3, ...) -> (...) int16 organ ids."""
        lab = np.zeros(q.shape[1:], dtype=np.int16)
        depth = ellipse_depth_xy(q, (0.0, 0.0), self.body)
        lab[depth > 0] = FAT
        lab[depth > self.fat_mm] = MUSCLE
        cavity = depth > self.fat_mm + self.wall_mm
        lab[cavity] = VISCERAL_FAT
        self._paint_viscera(lab, q, cavity)
        self._paint_back(lab, q, depth)
        self._paint_gas(lab, q)
        return lab

    def _paint_viscera(self, lab: np.ndarray, q: np.ndarray, cavity: np.ndarray) -> None:
        s, z = self.s, self.z_l1

        def paint(mask: np.ndarray, value: int) -> None:
            lab[mask & cavity] = value

        for side, value in ((1.0, LUNG_R), (-1.0, LUNG_L)):
            paint(ellipsoid(q, s * np.array([80.0 * side, -10.0, z / s + 175.0]), s * np.array([75.0, 80.0, 110.0])),
                  value)
        bowel = ellipsoid(q, (0.0, 30.0 * s, z - 85.0 * s), s * np.array([90.0, 55.0, 75.0]))
        paint(bowel & (self.loops(q) > -0.2), SMALL_BOWEL)
        paint(tube(q, (88.0 * s, 5.0 * s), (22.0 * s, 22.0 * s), (z - 130.0 * s, z + 25.0 * s)), COLON)
        paint(tube(q, (-92.0 * s, 0.0), (20.0 * s, 20.0 * s), (z - 130.0 * s, z + 45.0 * s)), COLON)
        paint(ellipsoid(q, (0.0, 62.0 * s, z + 15.0 * s), s * np.array([115.0, 22.0, 22.0])), COLON)
        for (centre, radii, rot), value in ((self.stomach, STOMACH), (self.pancreas, PANCREAS)):
            paint(ellipsoid(q, centre, radii, rot), value)
        c, r, rot = self.kidney
        paint(ellipsoid(q, c - np.array([0.0, 0.0, self.right_kidney_drop]), r, rot), KIDNEY_R)
        paint(ellipsoid(q, c * np.array([-1.0, 1.0, 1.0]), r, mirror_x(rot)), KIDNEY_L)
        for (centre, radii, rot), value in ((self.spleen, SPLEEN), (self.liver, LIVER), (self.gallbladder, GALLBLADDER)):
            paint(ellipsoid(q, centre, radii, rot), value)
        paint(ellipsoid(q, (0.0, 40.0 * s, z - 185.0 * s), s * np.array([45.0, 35.0, 35.0])), BLADDER)
        t = np.clip((z - q[2]) / 120.0, 0.0, 1.0)  # psoas widens caudally
        for side, value in ((1.0, PSOAS_R), (-1.0, PSOAS_L)):
            x = (q[0] - side * (30.0 + 12.0 * t) * s) / ((10.0 + 12.0 * t) * s)
            y = (q[1] - self.yv - 3.0 * s) / ((10.0 + 12.0 * t) * s)
            paint((x * x + y * y < 1.0) & (q[2] < z + 25.0 * s), value)
        vessels_z = (z - 3.4 * self.period, np.inf)
        paint(tube(q, (-16.0 * s, self.yv + 33.0 * s), (11.0 * s, 11.0 * s), vessels_z), AORTA)
        paint(tube(q, (20.0 * s, self.yv + 30.0 * s), (13.0 * s, 10.0 * s), vessels_z), IVC)

    def _paint_back(self, lab: np.ndarray, q: np.ndarray, depth: np.ndarray) -> None:
        """Paraspinal muscles, vertebrae (by level), discs, posterior arches and the cord."""
        s, yv, all_z = self.s, self.yv, (-np.inf, np.inf)
        under_fat = depth > self.fat_mm
        for side, value in ((1.0, AUTOCHTHON_R), (-1.0, AUTOCHTHON_L)):
            lab[tube(q, (27.0 * side * s, yv - 45.0 * s), (20.0 * s, 17.0 * s), all_z) & under_fat] = value
        rel = (q[2] - self.z_l1) / self.period
        level = np.rint(rel)
        in_disc = np.abs(rel - level) * self.period > (self.period - 7.0 * s) / 2.0
        ids = np.clip(VERTEBRA_L1 + level, min(VERTEBRAE), max(VERTEBRAE)).astype(np.int16)
        canal_y = yv - 27.0 * s
        body = tube(q, (0.0, yv), (21.0 * s, 17.0 * s), all_z)
        arch = tube(q, (0.0, canal_y), (15.0 * s, 15.0 * s), all_z) & (q[1] < yv - 15.0 * s)
        spinous = (np.abs(q[0]) < 4.0 * s) & (q[1] < canal_y) & (q[1] > canal_y - 38.0 * s)
        transverse = (np.abs(q[0]) < 40.0 * s) & (np.abs(q[1] - canal_y - 3.0 * s) < 5.0 * s)
        bone = (body | arch | spinous | transverse) & ~in_disc & (depth > 0)
        lab[bone] = ids[bone]
        lab[body & in_disc] = DISC
        canal = tube(q, (0.0, canal_y), (8.0 * s, 8.0 * s), all_z)
        lab[canal] = MUSCLE  # epidural fat and CSF, close to soft tissue on CT
        lab[tube(q, (0.0, canal_y), (5.0 * s, 5.0 * s), all_z)] = CORD

    def _paint_gas(self, lab: np.ndarray, q: np.ndarray) -> None:
        """Gas rises anteriorly in the stomach and pools in colon and bowel loops."""
        (cx, cy, cz), radii, _ = self.stomach
        g = self.gas(q)
        gas = (lab == STOMACH) & (q[1] > cy + self.gas_level * radii[1])
        gas |= (lab == COLON) & (g > 0.4)
        gas |= (lab == SMALL_BOWEL) & (g > 1.5)
        lab[gas] = GAS

    # -- contrast and artefacts -------------------------------------------------------------

    def mean_intensities(self, rng: np.random.Generator) -> dict[int, float]:
        return {k: v + rng.uniform(-4.0, 4.0) for k, v in HU_MEANS.items()}

    def texture_sd(self, means: dict[int, float]) -> dict[int, float]:
        sd = {k: 4.0 for k in means}
        sd.update({FAT: 8.0, VISCERAL_FAT: 10.0, GAS: 15.0, LUNG_L: 25.0, LUNG_R: 25.0, 0: 0.0})
        sd.update({v: 40.0 for v in VERTEBRAE})
        return sd

    def lesion_value(self, means: dict[int, float], rng: np.random.Generator) -> float:
        """Hypodense liver lesion (cyst or metastasis): 25-45 HU below the liver."""
        return means[LIVER] - rng.uniform(25.0, 45.0)

    def add_artefacts(self, image: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return gaussian_noise(image + self.bias(p), self.noise_sd, rng)

    def world_centre(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(-10, 10), rng.uniform(-30, 30), rng.uniform(-450, -150)])
