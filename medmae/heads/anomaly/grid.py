"""The arrays ``score`` thresholds, kept on the model's (preprocessed) grid: ``grid.npz``.

Calibration thresholds are quantiles of maps on the preprocessed grid (RAS, the model's
spacing). The NIfTI maps of a case folder are those maps resampled linearly onto the
source grid, which smooths their upper tail: thresholding them flags fewer voxels than
the calibrated rate (0.59 % instead of 1 % for 1.5 mm scans and a 3 mm model). So every
threshold metric of ``evaluate`` is computed on these arrays, and the binary map it
scores is exactly the one ``binary.nii.gz`` shows (that file is this binary mapped onto
the source grid by nearest neighbour).

    grid.npz: map_model, map_baseline, map_combined  float32 (X, Y, Z), 0 outside the body
              map_features                            the same, with score.feature_bank
              body                                    uint8 (X, Y, Z)
              binary                                  uint8 (X, Y, Z), only once calibrated
              affine                                  (4, 4) grid voxel -> RAS mm
              spacing                                 (3,) mm
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write
from medmae.io.errors import ScanError
from medmae.preprocess.spatial import resample_to_grid

GRID_FILE = "grid.npz"
MAP_FILES = {"model": "anomaly.nii.gz", "features": "features.nii.gz", "baseline": "baseline.nii.gz",
             "combined": "combined.nii.gz"}
"""Each map's NIfTI file (source grid) in a case folder."""


@dataclass
class GridArrays:
    """One case on the model grid: maps by name, body, binary (None: uncalibrated), lesion."""

    maps: dict[str, np.ndarray]
    body: np.ndarray
    binary: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]
    lesion: np.ndarray | None = None
    """(X, Y, Z) bool: the source-grid lesion mask brought here by nearest neighbour."""

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.spacing))


def save_grid(path: Path, maps: dict[str, np.ndarray], body: np.ndarray, binary: np.ndarray | None,
              meta: dict) -> Path:
    """Write the model-grid maps, body and binary of one case (compressed, atomically)."""
    arrays = {f"map_{k}": np.asarray(v, np.float32) for k, v in maps.items()}
    arrays.update(body=body.astype(np.uint8), affine=np.asarray(meta["affine"], np.float64),
                  spacing=np.asarray(meta["spacing"], np.float64))
    if binary is not None:
        arrays["binary"] = binary.astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def load_grid(path: Path, names: tuple[str, ...]) -> GridArrays:
    """Read the maps ``names`` of ``grid.npz``; ScanError naming it when missing (a run of an older
    medmae), broken, or without one of the maps (a case scored with other settings)."""
    if not path.is_file():
        raise ScanError(path, "no model-grid maps: this case was scored by an older medmae; score it again "
                              "(threshold metrics need the maps the thresholds were calibrated on)")
    try:
        with np.load(path) as z:
            missing = [n for n in names if f"map_{n}" not in z.files]
            held = [f[4:] for f in z.files if f.startswith("map_")]
            if not missing:
                maps = {n: z[f"map_{n}"].astype(np.float32) for n in names}
                body = z["body"] > 0
                binary = z["binary"] > 0 if "binary" in z.files else None
                affine, spacing = z["affine"], tuple(float(s) for s in z["spacing"])
    except (OSError, ValueError, KeyError) as e:
        raise ScanError(path, f"unreadable model-grid maps ({type(e).__name__}: {e})") from None
    if missing:
        raise ScanError(path, f"holds no {', '.join(missing)} map (it has {', '.join(held)}), but its run's "
                              f"settings make {', '.join(names)}: a case scored with other settings "
                              "(score.feature_bank) or by an older medmae; score it again")
    return GridArrays(maps, body, binary, affine, spacing)


def lesion_on_grid(lesion: np.ndarray, source_affine: np.ndarray, grid: GridArrays) -> np.ndarray:
    """(X0, Y0, Z0) bool lesion on the source grid -> (X, Y, Z) bool on the model grid (nearest)."""
    out = resample_to_grid(lesion.astype(np.float32), source_affine, grid.affine, grid.body.shape, order=0)
    return out > 0.5
