"""Read back what ``score`` wrote: the run's settings and each case's maps on the source grid.

Lesion masks come from the case's manifest ``label`` (recorded in case.json); they must
lie on the scan's own grid (any axis order), else a ScanError names the mask file. Cases
of a run passed as healthy get an empty mask.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmae.heads.anomaly.case import MAPS
from medmae.io.errors import ScanError
from medmae.io.geometry import align_to
from medmae.io.read import read_volume
from medmae.io.scan import check_label

FILES = {"model": "anomaly.nii.gz", "baseline": "baseline.nii.gz", "combined": "combined.nii.gz"}


@dataclass
class ScoredCase:
    """One case on its source grid: maps by name (X, Y, Z), body and lesion masks (bool)."""

    case_id: str
    maps: dict[str, np.ndarray]
    body: np.ndarray
    lesion: np.ndarray
    healthy: bool
    voxel_mm3: float
    scores: dict[str, float]
    folder: Path


def read_settings(run: str | os.PathLike) -> dict:
    path = Path(run) / "settings.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScanError(path, f"not a `medmae anomaly score` output folder ({e})") from None


def check_same_model(runs: list[Path]) -> dict:
    """All runs must come from the same weights and settings; returns the first run's settings."""
    first = read_settings(runs[0])
    for run in runs[1:]:
        s = read_settings(run)
        if (s["model"]["digest"], s["settings_digest"]) != (first["model"]["digest"], first["settings_digest"]):
            raise ScanError(run / "settings.json", f"scored by model {s['model']['digest']} with settings "
                            f"{s['settings_digest']}, unlike {runs[0]} ({first['model']['digest']}, "
                            f"{first['settings_digest']}): evaluate one model and setting at a time")
    return first


def _lesion(record: dict, ref, healthy: bool) -> np.ndarray | None:
    if healthy:
        return np.zeros(ref.array.shape, bool)
    if not record.get("label"):
        return None
    vol = read_volume(record["label"])
    check_label(ref, vol, "lesion")
    return np.asarray(align_to(ref, vol, "lesion mask").array) > 0


def read_case(folder: Path, healthy: bool) -> ScoredCase | None:
    """One case folder -> ScoredCase (None when it has no lesion mask and is not healthy)."""
    record = json.loads((folder / "case.json").read_text())
    ref = read_volume(folder / FILES["model"])
    lesion = _lesion(record, ref, healthy)
    if lesion is None:
        return None
    maps = {"model": np.asarray(ref.array, np.float32)}
    for name in MAPS[1:]:
        maps[name] = np.asarray(read_volume(folder / FILES[name]).array, np.float32)
    body = np.asarray(read_volume(folder / "body.nii.gz").array) > 0
    voxel = float(abs(np.linalg.det(ref.affine[:3, :3])))
    return ScoredCase(record["case_id"], maps, body, lesion, healthy, voxel, record["scores"], folder)


def read_runs(runs: list[Path], healthy_runs: list[Path]) -> tuple[list[ScoredCase], list[tuple[str, str]], dict]:
    """Every case of the runs; returns (cases, skipped (folder, reason), settings)."""
    settings = check_same_model([*runs, *healthy_runs])
    cases, skipped = [], []
    for run, healthy in [(r, False) for r in runs] + [(r, True) for r in healthy_runs]:
        for folder in sorted(p for p in (Path(run) / "cases").iterdir() if (p / "case.json").is_file()):
            case = read_case(folder, healthy)
            if case is None:
                skipped.append((str(folder), "no lesion mask (manifest label) and not in a --healthy run"))
            else:
                cases.append(case)
    return cases, skipped, settings
