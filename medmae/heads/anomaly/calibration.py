"""Healthy-only calibration: voxel thresholds at set false-positive rates, case-score norms.

A calibration is computed from scans of healthy subjects only, never from the scans it is
later used on. For each map (model, [features,] baseline, combined: config.map_names) and each FPR f, the threshold is
the (1 - f) quantile of the map's values pooled over every body voxel of the healthy
scans, so about a fraction f of healthy voxels lies above it. The healthy case scores are
kept too: a scored case's percentile says where it falls among healthy subjects, and the
sha256 of every calibration scan's image bytes (``inputs``), so that ``evaluate`` can
mark a calibration scan it is given as in-sample and keep it out of held-out figures.

Stored as JSON beside the model (``anomaly_calibration_<weights digest>_<settings>.json``)
with the model's weights digest and the scoring settings' digest: loading it for other
weights or other scoring settings (naming the settings that differ), or one without thresholds
for every map these settings make, is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medmae.atomic import atomic_write_text
from medmae.heads.anomaly.config import AnomalyConfig, calibrated_maps_mismatch, map_names

FORMAT = "medmae-anomaly-calibration"


class CalibrationError(ValueError):
    """A calibration file that is unreadable or belongs to another model / other settings."""


def settings_digest(cfg: AnomalyConfig) -> str:
    """12 hex digits over every setting that changes a map's values (score + baseline)."""
    data = {"score": cfg.score.model_dump(mode="json", exclude={"device", "sw_batch_size"}),
            "baseline": cfg.baseline.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Calibration:
    model_digest: str
    settings_digest: str
    thresholds: dict[str, dict[str, float]]
    """map name -> {str(fpr): threshold}."""
    case_scores: dict[str, list[float]]
    """map name -> sorted healthy case scores."""
    cases: int
    voxels: int
    min_component_mm3: float
    settings: dict
    inputs: list[str] = field(default_factory=list)
    """sha256 of each calibration scan's images (identity.image_digest); [] in files older
    than this field: then in-sample scans cannot be recognised."""

    def threshold(self, name: str, fpr: float) -> float:
        try:
            return self.thresholds[name][_key(fpr)]
        except KeyError:
            raise CalibrationError(f"no threshold for {name} at FPR {fpr} (calibrated: "
                                   f"{sorted(self.thresholds.get(name, {}))})") from None

    def percentile(self, name: str, score: float) -> float:
        """Percent of healthy case scores <= ``score``."""
        ref = np.asarray(self.case_scores[name])
        return float(100.0 * np.searchsorted(ref, score, side="right") / max(len(ref), 1))


def _key(fpr: float) -> str:
    return f"{fpr:g}"


def calibrate(healthy: list[tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]], model_digest: str,
              cfg: AnomalyConfig, inputs: list[str] | None = None, contrast: dict | None = None) -> Calibration:
    """``healthy``: per scan (maps by name, body mask, case scores by name) -> Calibration.

    ``inputs``: the sha256 of each scan's images, stored so that evaluations can find them.
    ``contrast``: {"map", "baseline_sign"} the maps were made with (score.map auto resolved)."""
    if not healthy:
        raise CalibrationError("no healthy scan could be scored: nothing to calibrate on")
    names = list(healthy[0][0])
    thresholds, scores = {}, {}
    for name in names:
        pooled = np.concatenate([m[name][body] for m, body, _ in healthy]).astype(np.float64)
        thresholds[name] = {_key(f): float(np.quantile(pooled, 1.0 - f, method="higher"))
                            for f in cfg.calibration.fprs}
        scores[name] = sorted(float(s[name]) for _, _, s in healthy)
    voxels = int(sum(body.sum() for _, body, _ in healthy))
    return Calibration(model_digest, settings_digest(cfg), thresholds, scores, len(healthy), voxels,
                       cfg.calibration.min_component_mm3,
                       {"score": cfg.score.model_dump(mode="json"), "baseline": cfg.baseline.model_dump(mode="json"),
                        "fprs": cfg.calibration.fprs, "contrast": contrast}, sorted(set(inputs or [])))


def contrast_mismatch(cal: Calibration, used: dict) -> str | None:
    """Why a case's map kind / baseline sign differs from the calibration's (None: same, or not recorded)."""
    ref = cal.settings.get("contrast")
    if not ref:
        return None
    diff = [f"{k} {used[k]} (calibrated: {ref[k]})" for k in ("map", "baseline_sign") if ref.get(k) != used.get(k)]
    return None if not diff else ("scored with " + ", ".join(diff) + ": its sequence differs from the calibration "
                                  "scans'; calibrate on healthy scans of this sequence or set score.map explicitly")


def default_path(folder: str | os.PathLike, model_digest: str, cfg: AnomalyConfig) -> Path:
    return Path(folder) / f"anomaly_calibration_{model_digest}_{settings_digest(cfg)}.json"


def save_calibration(cal: Calibration, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, json.dumps({"format": FORMAT, **asdict(cal)}, indent=1) + "\n")


def load_calibration(path: str | os.PathLike, model_digest: str, cfg: AnomalyConfig) -> Calibration:
    """Read a calibration and check it belongs to these weights and these scoring settings."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("format") != FORMAT:
            raise ValueError("not an anomaly calibration")
        cal = Calibration(**data)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CalibrationError(f"{path}: unreadable calibration ({e})") from None
    if cal.model_digest != model_digest:
        raise CalibrationError(f"{path}: calibrated for model weights {cal.model_digest}, not this model's "
                               f"{model_digest}; calibrate this model on healthy scans first")
    if cal.settings_digest != settings_digest(cfg):
        raise CalibrationError(f"{path}: calibrated with other scoring settings ({cal.settings_digest} != "
                               f"{settings_digest(cfg)}: {_differences(cal.settings, cfg)})")
    mismatch = calibrated_maps_mismatch(cal.thresholds, map_names(cfg.score))
    if mismatch:
        raise CalibrationError(f"{path}: {mismatch}: calibrate again")
    return cal


def _differences(stored: dict, cfg: AnomalyConfig) -> str:
    """The score / baseline settings whose values differ between a calibration and ``cfg``, in words."""
    ours = {"score": cfg.score.model_dump(mode="json"), "baseline": cfg.baseline.model_dump(mode="json")}
    diff = [f"{part}.{k} {v!r} (these settings: {ours[part].get(k)!r})"
            for part in ("score", "baseline") for k, v in sorted((stored.get(part) or {}).items())
            if k not in ("device", "sw_batch_size") and ours[part].get(k) != v]
    diff += [f"{part}.{k} not recorded (these settings: {v!r})" for part in ("score", "baseline")
             for k, v in sorted(ours[part].items()) if k not in (stored.get(part) or {})]
    return "calibrated with " + "; ".join(diff) if diff else f"{stored.get('score')}"


def remove_small(binary: np.ndarray, spacing: tuple[float, ...], min_mm3: float) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_mm3`` from a bool (X, Y, Z) map."""
    if min_mm3 <= 0 or not binary.any():
        return binary
    lab, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(lab.ravel()) * float(np.prod(spacing))
    keep = sizes >= min_mm3
    keep[0] = False
    return keep[lab]


def binary_map(map_: np.ndarray, body: np.ndarray, threshold: float, spacing: tuple[float, ...],
               min_mm3: float) -> np.ndarray:
    """``map_ > threshold`` inside the body, small components removed."""
    return remove_small((map_ > threshold) & body, spacing, min_mm3)
