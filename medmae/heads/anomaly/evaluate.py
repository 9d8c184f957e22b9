"""``evaluate``: one table per run, the MAE map (and feature map) beside the intensity baseline and their mix.

One voxel set everywhere: the voxels inside each scan's body mask (lesion voxels outside
it are scored by no metric; their share is reported per case). Two grids:

- source grid (the scans' own voxels, the NIfTI maps): voxel AUROC / AUPRC pooled over
  all voxels of all cases (scikit-learn), AUPRC averaged per diseased volume, and the
  ORACLE Dice: the best pooled Dice over thresholds scanned on the evaluated set itself
  (tuned on the test data: an upper bound, not a result). Its candidates are the bin
  edges and the calibrated rule applied on this grid (threshold, small components
  removed), so it is never below that rule on this grid;
- model grid (the preprocessed grid where the thresholds were calibrated, ``grid.npz``):
  every threshold metric at the calibrated healthy FPR, from the binary map ``score``
  wrote (binary.nii.gz): pooled Dice, lesion-wise detection (3D components: sensitivity,
  FP components per scan, F1, by size), false-positive volume and voxel FPR on healthy
  scans, the measured voxel FPR at each calibrated rate;
- case-level AUROC of the case scores when healthy and diseased cases are mixed.

Calibration scans (image sha256 among the calibration's inputs) are IN-SAMPLE: left out
of every figure above; their healthy FPR and false-positive volume are reported apart.
Bootstrap 95% intervals resample held-out cases; each metric records how many resamples
gave a value (a resample without lesions has no Dice). Voxel AUROC/AUPRC intervals use
per-case histograms (ties within a bin count half); the gap between the binned estimate
and scikit-learn's on the whole set is recorded beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medmae.heads.anomaly.calibration import remove_small
from medmae.heads.anomaly.config import EvaluationConfig, run_map_names
from medmae.heads.anomaly.counts import CaseCounts, case_counts, healthy_fpr, threshold_metrics
from medmae.heads.anomaly.metrics import (bin_edges, case_auroc, detection_summary, dice_curve, hist_auprc,
                                          hist_auroc, histograms, percentile_ci, voxel_auc)
from medmae.heads.anomaly.scored import ScoredCase

NAN = float("nan")


@dataclass
class MapResult:
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    ci_resamples: dict[str, int] = field(default_factory=dict)
    """Bootstrap resamples that gave a value, per metric (of ``bootstrap``)."""
    bootstrap: int = 0
    detection: dict | None = None
    fpr_check: dict[str, dict[str, float]] = field(default_factory=dict)
    """{calibrated rate: {"requested", "held_out", "in_sample"}}: measured healthy voxel FPR."""
    binning_gap: dict[str, float] = field(default_factory=dict)
    """|binned estimate - scikit-learn| of voxel AUROC / AUPRC on the whole set."""
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    cases: list[dict] = field(default_factory=list)
    """Per case (:func:`case_table`), the same for every map."""


@dataclass
class SourceCase:
    """One case on its source grid: score histogram (2, E) and the calibrated rule's tp/fp/fn."""

    hist: np.ndarray
    rule: tuple[int, int, int] | None
    diseased: bool
    score: float


def _source_case(case: ScoredCase, name: str, edges: np.ndarray, threshold: float | None,
                 min_mm3: float) -> SourceCase:
    y, s = case.lesion[case.body], case.maps[name][case.body]
    rule = None
    if threshold is not None and case.diseased:
        side = round(case.voxel_mm3 ** (1 / 3), 6)
        pred = remove_small((case.maps[name] > threshold) & case.body, (side,) * 3, min_mm3)
        truth = case.lesion & case.body
        tp = int((pred & truth).sum())
        rule = (tp, int(pred.sum()) - tp, int(truth.sum()) - tp)
    return SourceCase(histograms(y, s, edges), rule, case.diseased, case.scores[name])


def source_metrics(src: list[SourceCase], edges: np.ndarray, rule_thr: float | None = None
                   ) -> tuple[dict[str, float], float]:
    """Binned voxel AUROC / AUPRC, oracle Dice (bin edges + the calibrated rule) and case AUROC
    of a list of cases (repeats allowed); also the oracle's threshold (``rule_thr`` when the
    calibrated rule is the best candidate; NaN without diseased cases)."""
    h = np.sum([c.hist for c in src], axis=0)
    sick = [c for c in src if c.diseased]
    out = {"voxel_auroc": hist_auroc(h), "voxel_auprc": hist_auprc(h), "oracle_dice": NAN,
           "case_auroc": case_auroc(np.array([c.score for c in src]), np.array([c.diseased for c in src]))}
    best_thr = NAN
    if sick:
        curve = dice_curve(np.sum([c.hist for c in sick], axis=0))
        best = int(np.argmax(curve))
        out["oracle_dice"], best_thr = float(curve[best]), float(edges[best])
        if all(c.rule is not None for c in sick):
            tp, fp, fn = np.sum([c.rule for c in sick], axis=0)
            rule = 2 * tp / max(2 * tp + fp + fn, 1)
            if rule > out["oracle_dice"]:
                out["oracle_dice"], best_thr = float(rule), float(rule_thr) if rule_thr is not None else NAN
    return out, best_thr


def _bootstrap(res: MapResult, src: list[SourceCase], counts: list[CaseCounts], edges, key, cfg) -> None:
    rng = np.random.default_rng(cfg.seed)
    n = len(src)
    boots: dict[str, list[float]] = {}
    for _ in range(cfg.bootstrap):
        idx = rng.integers(0, n, n)
        vals, _ = source_metrics([src[i] for i in idx], edges)
        if counts:
            vals.update(threshold_metrics([counts[i] for i in idx], key))
        for k, v in vals.items():
            boots.setdefault(k, []).append(v)
    res.bootstrap = cfg.bootstrap
    for k, vals in boots.items():
        res.ci[k] = percentile_ci(vals)
        res.ci_resamples[k] = int(np.isfinite(vals).sum())


def evaluate_map(cases: list[ScoredCase], name: str, cfg: EvaluationConfig, thresholds: dict[str, float] | None,
                 binary_key: str | None, min_mm3: float) -> MapResult:
    """Every metric of one map over the held-out cases (see the module docstring).

    ``thresholds``: {calibrated rate: threshold} of this map (None: uncalibrated);
    ``binary_key``: the rate whose threshold made the binary maps."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    held = [c for c in cases if not c.in_sample]
    if not held:
        raise ValueError("every evaluated case is a calibration scan (in-sample): no held-out case to evaluate")
    res = MapResult(name)
    y = np.concatenate([c.lesion[c.body] for c in held])
    s = np.concatenate([c.maps[name][c.body] for c in held])
    thr = thresholds[binary_key] if thresholds else None
    edges = bin_edges(s, cfg.bins, s[y])
    src = [_source_case(c, name, edges, thr, min_mm3) for c in held]
    point, best_thr = source_metrics(src, edges, thr)
    res.metrics["voxel_auroc"], res.metrics["voxel_auprc"] = voxel_auc(y, s)
    res.binning_gap = {k: abs(point[k] - res.metrics[k]) for k in ("voxel_auroc", "voxel_auprc")
                       if np.isfinite(res.metrics[k])}
    per_vol = [voxel_auc(c.lesion[c.body], c.maps[name][c.body])[1] for c in held if c.lesion[c.body].any()]
    res.metrics["auprc_per_volume"] = float(np.mean(per_vol)) if per_vol else NAN
    res.metrics.update(oracle_dice=point["oracle_dice"], case_auroc=point["case_auroc"])
    res.metrics["oracle_threshold"] = best_thr
    counts: list[CaseCounts] = []
    if thresholds:
        counts = [case_counts(c, name, thresholds, binary_key, min_mm3) for c in held]
        res.metrics.update(threshold_metrics(counts, binary_key))
        res.metrics["threshold"] = float(thr)
        res.detection = detection_summary([c.detection for c in counts], cfg.size_bins_mm3)
        inside = [case_counts(c, name, thresholds, binary_key, min_mm3) for c in cases if c.in_sample]
        res.metrics["in_sample_fp_ml_healthy"] = threshold_metrics(inside, binary_key)["fp_ml_healthy"]
        res.metrics["in_sample_healthy_fpr"] = healthy_fpr(inside, binary_key)
        res.fpr_check = {k: {"requested": float(k), "held_out": healthy_fpr(counts, k),
                             "in_sample": healthy_fpr(inside, k)} for k in thresholds}
    _bootstrap(res, src, counts, edges, binary_key, cfg)
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        res.curves = {"fpr": fpr, "tpr": tpr, "precision": prec, "recall": rec}
    return res


def case_table(cases: list[ScoredCase]) -> list[dict]:
    """Per case: held out or in-sample, healthy, lesion voxels and the share outside the body mask."""
    rows = []
    for c in cases:
        n = int(c.lesion.sum())
        rows.append({"case_id": c.case_id, "in_sample": c.in_sample, "healthy": c.healthy, "lesion_voxels": n,
                     "lesion_outside_body": c.lesion_outside / n if n else None})
        if c.in_feature_bank is not None:
            rows[-1]["in_feature_bank"] = c.in_feature_bank
    return rows


def evaluate_cases(cases: list[ScoredCase], settings: dict, cfg: EvaluationConfig,
                   names: tuple[str, ...] | None = None) -> list[MapResult]:
    """MapResult per map of the run (``names``; None = config.run_map_names of its settings:
    model, [features,] baseline, combined), at the run's calibrated FPR if any."""
    if not cases:
        raise ValueError("no case with a lesion mask or in a healthy run: nothing to evaluate")
    names = run_map_names(settings) if names is None else names
    cal = settings.get("calibration")
    key = f"{cal['binary_fpr']:g}" if cal else None
    if cal and set(names) - set(cal["thresholds"]):
        raise ValueError(f"the run's calibration has no thresholds for the {', '.join(set(names) - set(cal['thresholds']))}"
                         f" map (it has {', '.join(cal['thresholds'])}): calibrate with the run's settings")
    out, rows = [], case_table(cases)
    for name in names:
        res = evaluate_map(cases, name, cfg, cal["thresholds"][name] if cal else None, key,
                           cal["min_component_mm3"] if cal else 0.0)
        sick = [c for c in cases if not c.in_sample and c.diseased]
        lesion = sum(int(c.lesion.sum()) for c in sick)
        res.metrics["lesion_outside_body"] = sum(c.lesion_outside for c in sick) / lesion if lesion else NAN
        res.metrics["held_out_cases"] = float(sum(not c.in_sample for c in cases))
        res.metrics["in_sample_cases"] = float(sum(c.in_sample for c in cases))
        res.cases = rows
        out.append(res)
    return out
