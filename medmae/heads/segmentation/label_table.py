"""What viewers need beside ``<case>_seg.nii.gz``: label names, colours, per-structure summaries.

    OUT/labels.json          {"0": "background", "<label id>": "<class name>", ...}
    OUT/labels.ctbl          3D Slicer colour table ("id name R G B A" lines; load it, then pick
                             it as the label map's colour node); Slicer also reads it as .txt
    OUT/labels_itksnap.txt   ITK-SNAP label description file (Segmentation > Import Label Descriptions)
    OUT/structures.csv       per case and structure: volume (ml), connected components, centroid
                             in RAS and LPS mm, the source voxel nearest the centroid, slice range

Ids are the label ids written in the maps (each class's first id, see classmap.py).
Names keep letters, digits, ``-`` and ``_`` in the Slicer table (it splits on spaces).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from medmae.atomic import atomic_write_text

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128)]
"""Distinct colours (Sasha Trubetskoy's 20), cycled for more classes."""
STRUCTURE_COLUMNS = ["case_id", "structure", "label_id", "volume_ml", "components", "centroid_ras_mm",
                     "centroid_lps_mm", "source_voxel", "slices"]


def label_entries(classes: dict[str, list[int]]) -> list[tuple[int, str, tuple[int, int, int]]]:
    """[(label id written, class name, RGB)] in class order."""
    return [(ids[0], name, PALETTE[k % len(PALETTE)]) for k, (name, ids) in enumerate(classes.items())]


def _slicer_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_") or "label"


def slicer_table(classes: dict[str, list[int]]) -> str:
    lines = ["# 3D Slicer colour table written by medmae", f"# {len(classes) + 1} values", "0 background 0 0 0 0"]
    lines += [f"{i} {_slicer_name(n)} {r} {g} {b} 255" for i, n, (r, g, b) in label_entries(classes)]
    return "\n".join(lines) + "\n"


def itksnap_table(classes: dict[str, list[int]]) -> str:
    head = ["################################################", "# ITK-SnAP Label Description File",
            "# Columns = IDX R G B A VIS MSH LABEL (written by medmae)",
            "################################################",
            '    0     0    0    0        0  0  0    "Clear Label"']
    rows = [f'{i:5d} {r:5d} {g:4d} {b:4d}        1  1  1    "{n.replace(chr(34), chr(39))}"'
            for i, n, (r, g, b) in label_entries(classes)]
    return "\n".join(head + rows) + "\n"


def write_label_tables(classes: dict[str, list[int]], out: Path) -> list[Path]:
    """OUT/labels.json, OUT/labels.ctbl, OUT/labels_itksnap.txt."""
    table = {"0": "background", **{str(i): n for i, n, _ in label_entries(classes)}}
    return [atomic_write_text(out / "labels.json", json.dumps(table, indent=1) + "\n"),
            atomic_write_text(out / "labels.ctbl", slicer_table(classes)),
            atomic_write_text(out / "labels_itksnap.txt", itksnap_table(classes))]


def _xyz(v) -> str:
    return " ".join(f"{float(x):.1f}" for x in v)


def structure_rows(case_id: str, ids: np.ndarray, affine: np.ndarray, classes: dict[str, list[int]]) -> list[dict]:
    """One row per class of an (X, Y, Z) label map on the source grid with its (4, 4) RAS affine."""
    ids = np.rint(np.asarray(ids)).astype(np.int64)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    rows = []
    for label, name, _ in label_entries(classes):
        mask = ids == label
        row = {"case_id": case_id, "structure": name, "label_id": label,
               "volume_ml": round(float(mask.sum()) * voxel_ml, 3), "components": 0, "centroid_ras_mm": "",
               "centroid_lps_mm": "", "source_voxel": "", "slices": ""}
        if mask.any():
            centre = np.array(ndimage.center_of_mass(mask))
            ras = affine[:3, :3] @ centre + affine[:3, 3]
            ks = np.nonzero(mask.any(axis=(0, 1)))[0]
            row.update(components=int(ndimage.label(mask, np.ones((3, 3, 3), bool))[1]), centroid_ras_mm=_xyz(ras),
                       centroid_lps_mm=_xyz(ras * [-1, -1, 1]), source_voxel=" ".join(str(int(round(c))) for c in centre),
                       slices=f"{ks.min() + 1}-{ks.max() + 1} of {ids.shape[2]}")
        rows.append(row)
    return rows
