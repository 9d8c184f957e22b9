"""Read back what ``score`` wrote: the run's settings and each case on both of its grids.

The source-grid NIfTI maps give the voxel metrics (AUROC, AUPRC, oracle Dice); the
model-grid arrays of ``grid.npz`` (what ``score`` thresholded) give every threshold metric,
with the lesion mask brought onto that grid by nearest neighbour. Lesion masks come from
the case's manifest ``label`` (recorded in case.json); they must lie on the scan's own
grid (any axis order), else a ScanError names the mask file and the case is skipped with
that reason. Cases of a run passed as healthy get an empty mask; so do unlabelled cases
when ``unlabelled_healthy`` is set (a study's evaluation set, whose unlabelled scans are
healthy by its definition). A case whose image sha256 is among the calibration's inputs
is marked in-sample.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmae.heads.anomaly.config import calibrated_maps_mismatch, run_map_names
from medmae.heads.anomaly.grid import GRID_FILE, MAP_FILES, GridArrays, lesion_on_grid, load_grid
from medmae.io.errors import ScanError
from medmae.io.geometry import align_to
from medmae.io.read import read_volume
from medmae.io.sanity import check_label


@dataclass
class ScoredCase:
    """One case: maps by name (X0, Y0, Z0), body and lesion masks (bool) on its source grid,
    and ``grid``: the model-grid arrays score thresholded (lesion brought there too)."""

    case_id: str
    maps: dict[str, np.ndarray]
    body: np.ndarray
    lesion: np.ndarray
    healthy: bool
    voxel_mm3: float
    scores: dict[str, float]
    folder: Path
    grid: GridArrays
    image_sha256: str = ""
    in_sample: bool = False
    """A calibration scan (its image sha256 is among the calibration's inputs)."""
    in_feature_bank: bool | None = None
    """One of score.feature_bank's scans (case.json; None: scored without a bank): its feature map is in-sample."""

    @property
    def diseased(self) -> bool:
        return bool(self.lesion.any())

    @property
    def lesion_outside(self) -> int:
        """Lesion voxels outside the body mask (source grid): no metric scores them."""
        return int((self.lesion & ~self.body).sum())


def read_settings(run: str | os.PathLike) -> dict:
    path = Path(run) / "settings.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ScanError(path, f"not a `medmae anomaly score` output folder ({e})") from None


def check_calibrated_maps(settings: dict, path: str | os.PathLike) -> None:
    """The calibration a run's settings.json (``path``) records must hold thresholds for
    exactly the maps its settings make (run_map_names); else a ScanError naming the file
    and the maps on each side (a calibration made with score.feature_bank on a run without
    it, or the reverse, or by an older medmae)."""
    cal = settings.get("calibration")
    mismatch = cal and calibrated_maps_mismatch(cal.get("thresholds") or {}, run_map_names(settings))
    if mismatch:
        raise ScanError(path, f"its calibration {mismatch}: calibrate with the run's settings and score again")


def check_same_model(runs: list[Path]) -> dict:
    """All runs must come from the same weights and settings; returns the first run's settings."""
    first = read_settings(runs[0])
    check_calibrated_maps(first, Path(runs[0]) / "settings.json")
    for run in runs[1:]:
        s = read_settings(run)
        check_calibrated_maps(s, Path(run) / "settings.json")
        if (s["model"]["digest"], s["settings_digest"]) != (first["model"]["digest"], first["settings_digest"]):
            raise ScanError(run / "settings.json", f"scored by model {s['model']['digest']} with settings "
                            f"{s['settings_digest']}, unlike {runs[0]} ({first['model']['digest']}, "
                            f"{first['settings_digest']}): evaluate one model and setting at a time")
    return first


def _lesion(record: dict, ref, healthy: bool, unlabelled_healthy: bool) -> np.ndarray | None:
    if healthy or (unlabelled_healthy and not record.get("label")):
        return np.zeros(ref.array.shape, bool)
    if not record.get("label"):
        return None
    vol = read_volume(record["label"])
    check_label(ref, vol, "lesion")
    return np.asarray(align_to(ref, vol, "lesion mask").array) > 0


def _record(folder: Path, settings: dict) -> dict:
    path = folder / "case.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ScanError(path, f"unreadable case record ({e})") from None
    ours = (settings["model"]["digest"], settings["settings_digest"])
    if (record.get("model_digest"), record.get("settings_digest")) != ours:
        raise ScanError(path, f"scored by model {record.get('model_digest')} with settings "
                              f"{record.get('settings_digest')}, not the run's {ours[0]} / {ours[1]}: a case "
                              "folder of another run; evaluate one model and setting at a time")
    return record


def read_case(folder: Path, healthy: bool, settings: dict, unlabelled_healthy: bool = False) -> ScoredCase | None:
    """One case folder -> ScoredCase (None when it has no lesion mask and is not healthy).

    ``healthy``: the case is in a --healthy run (an empty mask, whatever its label)."""
    record = _record(folder, settings)
    ref = read_volume(folder / MAP_FILES["model"])
    lesion = _lesion(record, ref, healthy, unlabelled_healthy)
    if lesion is None:
        return None
    names = run_map_names(settings)
    grid = load_grid(folder / GRID_FILE, names)
    grid.lesion = lesion_on_grid(lesion, ref.affine, grid)
    maps = {"model": np.asarray(ref.array, np.float32)}
    for name in names[1:]:
        maps[name] = np.asarray(read_volume(folder / MAP_FILES[name]).array, np.float32)
    body = np.asarray(read_volume(folder / "body.nii.gz").array) > 0
    voxel = float(abs(np.linalg.det(ref.affine[:3, :3])))
    return ScoredCase(record["case_id"], maps, body, lesion, not lesion.any(), voxel, record["scores"],
                      folder, grid, record.get("image_sha256", ""), in_feature_bank=record.get("in_feature_bank"))


def read_runs(runs: list[Path], healthy_runs: list[Path], unlabelled_healthy: bool = False
              ) -> tuple[list[ScoredCase], list[tuple[str, str]], dict]:
    """Every case of the runs; returns (cases, skipped (folder or file, reason), settings).

    A case that cannot be read (a bad lesion mask, a case folder of another run, a run of
    an older medmae) is skipped with the reason; the rest is evaluated."""
    settings = check_same_model([*runs, *healthy_runs])
    inputs = set((settings.get("calibration") or {}).get("inputs") or [])
    cases, skipped = [], []
    for run, healthy in [(r, False) for r in runs] + [(r, True) for r in healthy_runs]:
        if not (Path(run) / "cases").is_dir():
            skipped.append((str(Path(run) / "cases"), "no scored case in this run (see its bad.csv)"))
            continue
        for folder in sorted(p for p in (Path(run) / "cases").iterdir()
                             if not p.name.startswith(".") and (p / "case.json").is_file()):
            try:
                case = read_case(folder, healthy, settings, unlabelled_healthy)
            except ScanError as e:
                skipped.append((e.path, e.problem))
                continue
            if case is None:
                skipped.append((str(folder), "no lesion mask (manifest label) and not in a --healthy run"))
                continue
            case.in_sample = bool(case.image_sha256) and case.image_sha256 in inputs
            cases.append(case)
    return cases, skipped, settings
