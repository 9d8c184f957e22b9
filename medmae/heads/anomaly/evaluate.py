"""``evaluate``: one table per run, the MAE map beside the intensity baseline and their mix.

Voxels are those inside each scan's body mask, on the source grid. For each map:

- voxel AUROC / AUPRC pooled over all voxels of all cases (scikit-learn), AUPRC averaged
  per diseased volume;
- oracle Dice: the best pooled Dice over thresholds scanned on the evaluated set itself
  (labelled oracle: it is tuned on the test data, an upper bound, not a result). The scan
  covers the bin edges plus the calibrated threshold, and the calibrated rule itself (with its
  small-component removal) is one of the candidates, so it is never below the Dice at FPR;
- at the calibrated healthy-FPR threshold (when the run was calibrated): pooled Dice,
  lesion-wise detection (3D components: sensitivity, FP components per scan, F1, by size),
  false-positive volume on healthy scans;
- case-level AUROC of the case scores when healthy and diseased cases are mixed;
- bootstrap 95% intervals over cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medmae.heads.anomaly.calibration import remove_small
from medmae.heads.anomaly.case import MAPS
from medmae.heads.anomaly.config import EvaluationConfig
from medmae.heads.anomaly.metrics import (Detection, bin_edges, case_auroc, detect, detection_summary,
                                          dice_curve, hist_auprc, hist_auroc, histograms, percentile_ci, voxel_auc)
from medmae.heads.anomaly.scored import ScoredCase


@dataclass
class MapResult:
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    detection: dict | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def _binary(case: ScoredCase, name: str, threshold: float, min_mm3: float) -> np.ndarray:
    side = round(case.voxel_mm3 ** (1 / 3), 6)
    return remove_small((case.maps[name] > threshold) & case.body, (side, side, side), min_mm3)


def _per_case(cases: list[ScoredCase], name: str, edges: np.ndarray, threshold: float | None, min_mm3: float):
    hists, counts, found = [], [], []
    for c in cases:
        y, s = c.lesion[c.body], c.maps[name][c.body]
        hists.append(histograms(y, s, edges))
        if threshold is not None:
            pred = _binary(c, name, threshold, min_mm3)
            tp = int((pred & c.lesion).sum())
            counts.append((tp, int(pred.sum()) - tp, int(c.lesion.sum()) - tp, int(pred.sum()) * c.voxel_mm3))
            found.append(detect(pred, c.lesion & c.body, c.voxel_mm3))
    return np.stack(hists), np.asarray(counts, np.float64), found


def _dice_from(counts: np.ndarray) -> float:
    tp, fp, fn = counts[:, 0].sum(), counts[:, 1].sum(), counts[:, 2].sum()
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def _summary(idx: np.ndarray, hists, counts, found: list[Detection], diseased, scores, healthy) -> dict:
    h = hists[idx].sum(0)
    d = diseased[idx]
    out = {"voxel_auroc": hist_auroc(h), "voxel_auprc": hist_auprc(h),
           "oracle_dice": float(dice_curve(hists[idx][d].sum(0)).max()) if d.any() else float("nan"),
           "case_auroc": case_auroc(scores[idx], d)}
    if len(counts):
        out["dice_at_fpr"] = _dice_from(counts[idx][d]) if d.any() else float("nan")
        out["oracle_dice"] = max(out["oracle_dice"], out["dice_at_fpr"]) if d.any() else float("nan")
        det = detection_summary([found[i] for i in idx], [])
        out.update(sensitivity=det["sensitivity"], fp_per_scan=det["fp_per_scan"], f1=det["f1"])
        hv = counts[idx][healthy[idx], 3]
        out["fp_ml_healthy"] = float(hv.mean() / 1000) if hv.size else float("nan")
    return out


def evaluate_map(cases: list[ScoredCase], name: str, cfg: EvaluationConfig, threshold: float | None,
                 min_mm3: float) -> MapResult:
    """Every metric of one map over the cases (see the module docstring)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = np.concatenate([c.lesion[c.body] for c in cases])
    s = np.concatenate([c.maps[name][c.body] for c in cases])
    edges = bin_edges(s, cfg.bins)
    if threshold is not None:
        edges = np.unique(np.append(edges, threshold))
    hists, counts, found = _per_case(cases, name, edges, threshold, min_mm3)
    diseased = np.array([bool(c.lesion.any()) for c in cases])
    healthy = np.array([c.healthy for c in cases])
    scores = np.array([c.scores[name] for c in cases])
    res = MapResult(name)
    res.metrics["voxel_auroc"], res.metrics["voxel_auprc"] = voxel_auc(y, s)
    per_vol = [voxel_auc(c.lesion[c.body], c.maps[name][c.body])[1] for c in cases if c.lesion[c.body].any()]
    res.metrics["auprc_per_volume"] = float(np.mean(per_vol)) if per_vol else float("nan")
    everything = np.arange(len(cases))
    point = _summary(everything, hists, counts, found, diseased, scores, healthy)
    res.metrics.update({k: v for k, v in point.items() if k not in ("voxel_auroc", "voxel_auprc")})
    curve = dice_curve(hists[diseased].sum(0)) if diseased.any() else np.zeros(len(edges))
    best = int(np.argmax(curve))
    calibrated_wins = threshold is not None and point.get("dice_at_fpr", -1.0) > curve[best]
    res.metrics["oracle_threshold"] = float(threshold if calibrated_wins else edges[best])
    if threshold is not None:
        res.metrics["threshold"] = float(threshold)
        res.detection = detection_summary(found, cfg.size_bins_mm3)
    rng = np.random.default_rng(cfg.seed)
    boots = [_summary(rng.integers(0, len(cases), len(cases)), hists, counts, found, diseased, scores, healthy)
             for _ in range(cfg.bootstrap)]
    res.ci = {k: percentile_ci([b[k] for b in boots]) for k in (boots[0] if boots else {})}
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        res.curves = {"fpr": fpr, "tpr": tpr, "precision": prec, "recall": rec}
    return res


def evaluate_cases(cases: list[ScoredCase], settings: dict, cfg: EvaluationConfig) -> list[MapResult]:
    """MapResult for model, baseline and combined maps, at the run's calibrated FPR if any."""
    if not cases:
        raise ValueError("no case with a lesion mask or in a healthy run: nothing to evaluate")
    cal = settings.get("calibration")
    out = []
    for name in MAPS:
        thr = None
        if cal:
            thr = cal["thresholds"][name][f"{cal['binary_fpr']:g}"]
        out.append(evaluate_map(cases, name, cfg, thr, cal["min_component_mm3"] if cal else 0.0))
    return out
