"""Per-case counts at the calibrated threshold, and every threshold metric from them.

All counts are on the model grid (where the thresholds were calibrated) and inside the
body mask: the lesion voxels outside it are scored by no metric (``evaluate`` reports
their share per case). A bootstrap resample is just a list of CaseCounts with repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmae.heads.anomaly.calibration import binary_map
from medmae.heads.anomaly.metrics import Detection, detect, detection_summary
from medmae.heads.anomaly.scored import ScoredCase

NAN = float("nan")


@dataclass(frozen=True)
class CaseCounts:
    """One case at the calibrated rule (model grid, inside the body).

    tp / fp / fn: voxels of the binary map against the lesion; body: body voxels;
    above: voxels above each calibrated threshold before small components are removed
    ({fpr key: count}, the measured voxel FPR on healthy scans); detection: lesion-wise.
    """

    tp: int
    fp: int
    fn: int
    body: int
    voxel_mm3: float
    healthy: bool
    above: dict[str, int]
    detection: Detection

    @property
    def flagged_ml(self) -> float:
        return (self.tp + self.fp) * self.voxel_mm3 / 1000.0


def case_counts(case: ScoredCase, name: str, thresholds: dict[str, float], binary_key: str,
                min_mm3: float) -> CaseCounts:
    """Counts of one case for map ``name``. The model map's binary is the one ``score`` wrote
    (``grid.npz``, shown by binary.nii.gz); the other maps get the same rule here."""
    g = case.grid
    pred = g.binary if name == "model" and g.binary is not None else binary_map(
        g.maps[name], g.body, thresholds[binary_key], g.spacing, min_mm3)
    pred = pred & g.body
    truth = g.lesion & g.body
    tp = int((pred & truth).sum())
    above = {k: int((g.maps[name][g.body] > t).sum()) for k, t in thresholds.items()}
    return CaseCounts(tp, int(pred.sum()) - tp, int(truth.sum()) - tp, int(g.body.sum()), g.voxel_mm3,
                      case.healthy, above, detect(pred, truth, g.voxel_mm3))


def healthy_fpr(counts: list[CaseCounts], key: str) -> float:
    """Pooled share of healthy body voxels above the threshold of rate ``key`` (NaN: no healthy case)."""
    h = [c for c in counts if c.healthy]
    body = sum(c.body for c in h)
    return sum(c.above[key] for c in h) / body if body else NAN


def threshold_metrics(counts: list[CaseCounts], binary_key: str) -> dict[str, float]:
    """Every threshold metric of a list of cases (repeats allowed):

    dice_at_fpr (pooled over diseased cases), sensitivity / fp_per_scan / f1 (lesion-wise, all
    cases), fp_ml_healthy (mean flagged volume of healthy cases, ml), healthy_fpr (pooled
    voxel FPR of healthy cases at the applied threshold, before small components go)."""
    sick = [c for c in counts if not c.healthy]
    tp, fp, fn = (sum(getattr(c, k) for c in sick) for k in ("tp", "fp", "fn"))
    det = detection_summary([c.detection for c in counts], [])
    healthy = [c.flagged_ml for c in counts if c.healthy]
    return {"dice_at_fpr": 2 * tp / max(2 * tp + fp + fn, 1) if sick else NAN,
            "sensitivity": det["sensitivity"], "fp_per_scan": det["fp_per_scan"] if counts else NAN,
            "f1": det["f1"], "fp_ml_healthy": float(np.mean(healthy)) if healthy else NAN,
            "healthy_fpr": healthy_fpr(counts, binary_key)}
