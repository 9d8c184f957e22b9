"""TotalSegmentator's default output: a folder ``segmentations/<organ>.nii.gz`` (one binary
mask per organ) beside the CT or MR it was run on.

:func:`is_totalseg_folder` recognises such a folder by its file names (every one a
TotalSegmentator class, at least two of them); :func:`read_totalseg` combines its masks
into one label map. Ids are TotalSegmentator's own multi-label ids (task ``total``, v2,
or ``total_mr`` when a name is only in that task), so a combined map carries the ids of
the maps ``TotalSegmentator --ml`` writes (1 spleen, 2 kidney_right, 3 kidney_left,
5 liver...); a folder holding names of neither task gets ids 1..N in name order.
:func:`names_table` gives the id -> name table. Class names: TotalSegmentator v2
(wasserth/TotalSegmentator, Apache-2.0), ``totalsegmentator/map_to_binary.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medmae.io.errors import ScanError

_SIDES = ("left", "right")


def _ribs() -> list[str]:
    return [f"rib_{side}_{i}" for side in _SIDES for i in range(1, 13)]


def _pairs(*names: str) -> list[str]:
    return [f"{n}_{side}" for n in names for side in _SIDES]


VERTEBRAE = ["vertebrae_S1", *[f"vertebrae_L{i}" for i in range(5, 0, -1)],
             *[f"vertebrae_T{i}" for i in range(12, 0, -1)], *[f"vertebrae_C{i}" for i in range(7, 0, -1)]]
TOTAL = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
    "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",
    "kidney_cyst_right", "sacrum", *VERTEBRAE, "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk",
    "subclavian_artery_right", "subclavian_artery_left", "common_carotid_artery_right",
    "common_carotid_artery_left", "brachiocephalic_vein_left", "brachiocephalic_vein_right",
    "atrial_appendage_left", "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein",
    "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
    *_pairs("humerus", "scapula", "clavicula", "femur", "hip"), "spinal_cord",
    *_pairs("gluteus_maximus", "gluteus_medius", "gluteus_minimus", "autochthon", "iliopsoas"),
    "brain", "skull", *_ribs(), "sternum", "costal_cartilages")
"""Task ``total`` (v2): id = position + 1 (117 classes)."""
TOTAL_MR = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_left", "lung_right", "esophagus", "small_bowel",
    "duodenum", "colon", "urinary_bladder", "prostate", "sacrum", "vertebrae", "intervertebral_discs",
    "spinal_cord", "heart", "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein",
    "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
    *_pairs("humerus", "scapula", "clavicula", "femur", "hip"),
    *_pairs("gluteus_maximus", "gluteus_medius", "gluteus_minimus", "autochthon", "iliopsoas"), "brain")
"""Task ``total_mr``: id = position + 1 (50 classes)."""
KNOWN = frozenset(TOTAL) | frozenset(TOTAL_MR)
SUFFIXES = (".nii.gz", ".nii")


def organ_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{organ name: file} of the NIfTI files in ``folder`` (not recursive)."""
    out = {}
    for f in sorted(Path(folder).iterdir()):
        name = f.name
        for suffix in SUFFIXES:
            if name.lower().endswith(suffix) and f.is_file():
                out[name[: -len(suffix)]] = f
    return out


def is_totalseg_folder(folder: str | os.PathLike) -> bool:
    """True for a folder of at least two NIfTI files, every one named for a TotalSegmentator class."""
    try:
        files = organ_files(folder)
    except OSError:
        return False
    return len(files) >= 2 and set(files) <= KNOWN


def names_table(names) -> dict[int, str]:
    """{id: name} for these organ names: ``total`` ids, else ``total_mr`` ids, else 1..N sorted."""
    names = set(names)
    for task in (TOTAL, TOTAL_MR):
        if names <= set(task):
            return {i + 1: n for i, n in enumerate(task) if n in names}
    return {i + 1: n for i, n in enumerate(sorted(names))}


def read_totalseg(folder: Path):
    """One label map (uint8, or uint16 past 255 ids) from the organ masks of ``folder``.

    Returns (array (X, Y, Z), affine, meta with 'label_names' {id: name}). Raises ScanError
    naming the file when a mask is unreadable, not binary, or on another grid than the first.
    """
    from medmae.io.geometry import check_same_grid
    from medmae.io.read import read_volume

    files = organ_files(folder)
    table = names_table(files)
    first = None
    out = None
    for i, name in table.items():
        vol = read_volume(files[name])
        if first is None:
            first = vol
            out = np.zeros(vol.shape, np.uint8 if max(table) <= 255 else np.uint16)
        else:
            check_same_grid(first, vol, what="organ mask")
            if vol.shape != first.shape:
                raise ScanError(vol.path, f"organ mask of shape {vol.shape} on another axis order than "
                                          f"{first.path.name} {first.shape}")
        values = np.unique(vol.array)
        if not set(values.tolist()) <= {0, 1}:
            raise ScanError(vol.path, f"TotalSegmentator organ mask holds values {values[:5].tolist()}...; "
                                      f"expected a binary 0/1 mask")
        out[np.asarray(vol.array) > 0] = i
    return out, first.affine, {"label_names": table}
