"""One case through the head: check, preprocess as the model's cache, score, derive maps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from medmae.heads.anomaly.compat import check_case, check_spacing
from medmae.heads.anomaly.config import AnomalyConfig, map_names
from medmae.heads.anomaly.contrast import Contrast, resolve
from medmae.heads.anomaly.falsealarm import csf_mask
from medmae.heads.anomaly.features import FeatureBank, bank_features, feature_map
from medmae.heads.anomaly.identity import image_digest
from medmae.heads.anomaly.maps import (anomaly_map, case_statistic, combined_map, edge_distance_mm,
                                       edge_normalised, intensity_baseline)
from medmae.export.pretrained import PretrainedMAE
from medmae.heads.anomaly.scorer import ErrorStats, score_volume
from medmae.io.errors import ScanError
from medmae.io.manifest import Case, read_manifest
from medmae.preprocess.case import prepare_case
from medmae.preprocess.midline import estimate_midline

@dataclass
class CaseMaps:
    """A scored case on the preprocessed grid (RAS, the model's spacing).

    image: (C, X, Y, Z) preprocessed scan; body: (X, Y, Z) bool; label: (X, Y, Z) int16 or None;
    maps: config.map_names(score) ("model", ["features",] "baseline", "combined") -> (X, Y, Z)
    float32; stats: the MAE's error statistics;
    scores: case score per map; meta: prepare_case's meta (maps results back to the source grid).
    """

    case: Case
    image: np.ndarray
    body: np.ndarray
    label: np.ndarray | None
    maps: dict[str, np.ndarray]
    stats: ErrorStats
    scores: dict[str, float]
    meta: dict
    midline: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    image_sha256: str = ""
    """sha256 of the scan's image bytes (:func:`medmae.heads.anomaly.identity.image_digest`)."""
    contrast: Contrast | None = None
    """The map kind and baseline sign used (score.map / baseline.sign resolved by sequence)."""
    in_feature_bank: bool = False
    """The scan is one of score.feature_bank's: its feature map is in-sample (its tokens are in the bank)."""


def unit_map(kind: str, image: np.ndarray, body: np.ndarray, anatomy: np.ndarray | None, path: str
             ) -> tuple[np.ndarray | None, float | None]:
    """The structured-mask units of a case: None (random), hemispheres 1 (left) / 2 (right), or anatomy."""
    if kind == "random":
        return None, None
    if kind == "hemisphere":
        c = estimate_midline(image, body)
        x = np.arange(body.shape[0], dtype=np.float32)[:, None, None]
        return np.broadcast_to(np.where(x < c, 1, 2), body.shape).astype(np.int16), c
    if anatomy is None or not anatomy.any():
        raise ScanError(path, "score.mask=anatomy needs an anatomy map (the manifest's anatomy column)")
    return anatomy.astype(np.int16), None


def prepare(case: Case, model: PretrainedMAE) -> tuple[np.ndarray, dict, dict]:
    """``prepare_case`` with the model's preprocessing; its data errors become ScanErrors.

    prepare_case raises ScanError for an unusable input and, by its contract, ValueError only
    for data that cannot be processed (e.g. constant intensities): both name the scan here.
    """
    try:
        return prepare_case(case, model.preprocess, priors=False)
    except ScanError:
        raise
    except ValueError as e:
        raise ScanError(case.image[0], str(e)) from e


def feature_bank(model: PretrainedMAE, manifest: str) -> FeatureBank:
    """The feature bank of the reference scans ``manifest`` names (built once per model)."""
    key = ("feature_bank", str(manifest))
    if key not in model._built:
        refs, digests = [], []
        for case in read_manifest(manifest):
            image, maps, meta = prepare(case, model)
            refs.append((image, maps["body"].astype(bool), [p["floor"] for p in meta["normalisation"]]))
            digests.append(image_digest(case))
        model._built[key] = bank_features(refs, model)
        model._built[key].inputs = frozenset(digests)
    return model._built[key]


def normalise_map(map_: np.ndarray, body: np.ndarray, cfg: AnomalyConfig, spacing: tuple[float, ...]) -> np.ndarray:
    """(X, Y, Z) MAE-based map divided by the error expected where it is (score.normalise)."""
    if cfg.score.normalise == "edge":
        map_ = edge_normalised(map_, body, spacing)
    return map_


def derive_maps(stats: ErrorStats, image: np.ndarray, body: np.ndarray, contrast: Contrast, cfg: AnomalyConfig,
                spacing: tuple[float, ...], features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The (X, Y, Z) maps of ``map_names(cfg.score)`` from a scan's error statistics and, with
    score.feature_bank, its (X, Y, Z) feature map (``features``; normalised, and cut at the rim
    and CSF (scored_voxels), as the MAE map is), per the score settings."""
    s = cfg.score
    if (features is None) != (s.feature_bank is None):
        raise ValueError("a feature map is given exactly when score.feature_bank is set")
    mae = normalise_map(anomaly_map(stats, contrast.map, body, s.channel, s.median_filter), body, cfg, spacing)
    features = None if features is None else normalise_map(features, body, cfg, spacing)
    base = intensity_baseline(image, body, cfg.baseline.channel, contrast.baseline_sign)
    made = {"model": mae, "features": features, "baseline": base, "combined": combined_map(mae, base, body, s.combine)}
    out = {k: made[k] for k in map_names(s)}
    keep = scored_voxels(image, body, contrast, cfg, spacing)
    if keep is not None:
        out = {k: np.where(keep, v, 0.0).astype(np.float32) for k, v in out.items()}
    return out


def scored_voxels(image: np.ndarray, body: np.ndarray, contrast: Contrast, cfg: AnomalyConfig,
                  spacing: tuple[float, ...]) -> np.ndarray | None:
    """(X, Y, Z) bool: where the maps may be non-zero (body minus the rim of score.rim_mm and the
    CSF class of score.csf_classes); None when both are off. The body itself, and so the voxels
    evaluated, stay the same."""
    s = cfg.score
    if s.rim_mm <= 0 and not s.csf_classes:
        return None
    keep = body.copy()
    if s.rim_mm > 0:
        keep &= edge_distance_mm(body, spacing) > s.rim_mm
    if s.csf_classes:
        c = cfg.baseline.channel
        seq = contrast.sequences[c] if c < len(contrast.sequences) else ""
        keep &= ~csf_mask(image[c], body, seq, classes=s.csf_classes)
    return keep


def analyse_case(case: Case, model: PretrainedMAE, cfg: AnomalyConfig) -> CaseMaps:
    """Score one case. Raises ScanError (naming the file) for a scan the model cannot score."""
    s = cfg.score
    t0 = time.perf_counter()
    check_case(case, model, s.check_sequence)
    image, maps, meta = prepare(case, model)
    check_spacing(case.image[0], case.modality, meta["source_spacing"], model, s.max_spacing_ratio)
    body = maps["body"].astype(bool)
    units, midline = unit_map(s.mask, image, body, maps.get("anatomy"), case.image[0])
    t1 = time.perf_counter()
    floors = [p["floor"] for p in meta["normalisation"]]
    stats = score_volume(image, body, units, model, s, floors)
    t2 = time.perf_counter()
    contrast = resolve(cfg, model, case)
    bank = None if s.feature_bank is None else feature_bank(model, s.feature_bank)
    feats = None if bank is None else feature_map(image, body, floors, model, bank)
    out = derive_maps(stats, image, body, contrast, cfg, tuple(model.preprocess.spacing), feats)
    digest = image_digest(case)
    voxel_ml = float(np.prod(model.preprocess.spacing)) / 1000.0
    scores = {k: case_statistic(v, body, s.case_statistic, s.abnormal_level, s.top_percent, voxel_ml)
              for k, v in out.items()}
    return CaseMaps(case, image, body, maps.get("label"), out, stats, scores, meta, midline,
                    {"preprocess": t1 - t0, "score": t2 - t1, "maps": time.perf_counter() - t2},
                    digest, contrast, bank is not None and digest in bank.inputs)
