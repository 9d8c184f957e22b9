"""A real `anomaly score` output folder without a model: real scans through prepare_case and
write_case, with a stand-in anomaly map (squared robust z-score of the scan) and a calibration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from medmae.config.base import load_config
from medmae.heads.anomaly.calibration import Calibration
from medmae.heads.anomaly.case import CaseMaps
from medmae.heads.anomaly.outputs import write_case
from medmae.heads.anomaly.scorer import ErrorStats
from medmae.io.manifest import Case
from medmae.preprocess.case import prepare_case
from medmae.preprocess.config import PreprocessConfig

DATA = Path(__file__).resolve().parents[2] / "data"
THRESHOLD, FPR = 9.0, 0.05


def case_maps(case: Case, spacing: float = 3.0) -> CaseMaps:
    cfg = load_config(PreprocessConfig, None, [f"spacing=[{spacing},{spacing},{spacing}]", "priors.supervoxels=0", "min_extent_mm=0"])
    image, maps, meta = prepare_case(case, cfg, priors=False)
    body = maps["body"].astype(bool)
    med = np.median(image[0][body])
    mad = np.median(np.abs(image[0][body] - med)) * 1.4826 + 1e-6
    amap = np.where(body, ((image[0] - med) / mad) ** 2, 0).astype(np.float32)
    stats = ErrorStats(image * 0, image * 0, image * 0, image.copy(), body.copy())
    out = {"model": amap, "baseline": amap * 0.5, "combined": amap * 0.75}
    scores = {k: float(np.sort(v[body])[-max(1, body.sum() // 100):].mean()) for k, v in out.items()}
    return CaseMaps(case, image, body, maps.get("label"), out, stats, scores, meta)


def calibration(healthy: int = 3) -> Calibration:
    return Calibration("d" * 12, "s" * 12, {n: {f"{FPR:g}": THRESHOLD} for n in ("model", "baseline", "combined")},
                       {n: [1.0 + i for i in range(healthy)] for n in ("model", "baseline", "combined")},
                       healthy, 1000, 50.0, {})


def scored_run(out: Path, cases: list[Case], calibrated: bool = True, healthy: int = 3,
               map_kind: str = "squared") -> Path:
    """Write OUT/cases/<id>/..., OUT/scores.csv and OUT/settings.json as `anomaly score` does."""
    cal = calibration(healthy) if calibrated else None
    records = []
    for case in cases:
        cm = case_maps(case)
        rec = {"case_id": case.case_id, "modality": case.modality, "sequence": case.sequence,
               "score": cm.scores["model"], "scores": cm.scores, "label": case.label, "has_label": bool(case.label)}
        if cal is not None:
            rec["percentiles"] = {k: cal.percentile(k, v) for k, v in cm.scores.items()}
        records.append(write_case(cm, out / "cases" / case.case_id, rec, cal, FPR))
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["case_id", "score"], extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    settings = {"medmae_version": "test", "model": {"digest": "d" * 12, "name": "m"}, "settings_digest": "s" * 12,
                "score_statistic": "mean of the top 1% of the map's voxels inside the body mask",
                "config": {"score": {"map": map_kind, "max_spacing_ratio": 2.0}},
                "calibration": None if cal is None else {"thresholds": cal.thresholds, "cases": cal.cases,
                                                         "binary_fpr": FPR, "min_component_mm3": 50.0},
                "warnings": []}
    (out / "settings.json").write_text(json.dumps(settings))
    return out


def brain_case(case_id: str = "brain1") -> Case:
    return Case(case_id, [str(DATA / "brain1_t1c.nrrd")], "MR", sequence="t1c", label=str(DATA / "brain1_tumour.nrrd"))
