"""Evaluation metrics on voxel maps and lesion masks (inside the body mask).

Point estimates of voxel AUROC / AUPRC use scikit-learn. Curves, the oracle Dice scan and
the bootstrap intervals use per-case score histograms over shared bin edges, so a
resample of cases is a sum of histograms (exact for Dice at the bin edges; the bootstrap
AUROC counts ties within a bin as half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

FULL = np.ones((3, 3, 3), bool)  # 26-connectivity


def voxel_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) of scores for bool labels (scikit-learn); NaN when one class is missing."""
    y = np.asarray(labels, bool).ravel()
    if y.all() or not y.any():
        return float("nan"), float("nan")
    s = np.asarray(scores, np.float64).ravel()
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); 1.0 when both are empty."""
    a, b = np.asarray(pred, bool), np.asarray(truth, bool)
    den = a.sum() + b.sum()
    return 1.0 if den == 0 else float(2.0 * (a & b).sum() / den)


def bin_edges(scores: np.ndarray, bins: int, positives: np.ndarray | None = None) -> np.ndarray:
    """Increasing thresholds: ``bins`` quantiles of the pooled scores and, given the positives'
    scores, ``bins`` quantiles of those plus the next float above each. With at most ``bins``
    distinct positive scores every one is an edge with a bin of its own, and the binned AUROC,
    AUPRC and Dice curve equal the exact ones (ties within a bin are then true ties)."""
    levels = np.linspace(0, 1, bins)
    edges = [np.quantile(np.asarray(scores, np.float64), levels, method="lower")]
    if positives is not None and np.size(positives):
        pos = np.quantile(np.asarray(positives, np.float64), levels, method="lower")
        edges += [pos, np.nextafter(pos, np.inf)]
    return np.unique(np.concatenate(edges))


def histograms(labels: np.ndarray, scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(2, E) counts of negatives / positives per bin; bin i holds edges[i] <= s < edges[i+1]."""
    idx = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 1)
    y = np.asarray(labels, bool)
    return np.stack([np.bincount(idx[~y], minlength=len(edges)), np.bincount(idx[y], minlength=len(edges))])


def counts_above(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, E) histogram -> (fp, tp) of the rule ``score >= edges[i]``, for each i."""
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    return above[0], above[1]


def hist_auroc(hist: np.ndarray) -> float:
    """AUROC from a (2, E) histogram (ties within a bin count half)."""
    neg, pos = hist.astype(np.float64)
    if neg.sum() == 0 or pos.sum() == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def hist_auprc(hist: np.ndarray) -> float:
    """Average precision from a (2, E) histogram: sum over thresholds of delta recall x precision."""
    fp, tp = (a.astype(np.float64) for a in counts_above(hist))
    if tp[0] == 0:
        return float("nan")
    recall, precision = tp / tp[0], tp / np.maximum(tp + fp, 1)
    d = recall - np.append(recall[1:], 0.0)
    return float((d * precision).sum())


def dice_curve(hist: np.ndarray) -> np.ndarray:
    """Pooled Dice of ``score >= edges[i]`` for each i, from a (2, E) histogram."""
    fp, tp = counts_above(hist)
    positives = hist[1].sum()
    return 2.0 * tp / np.maximum(2.0 * tp + fp + (positives - tp), 1)


@dataclass
class Detection:
    """Lesion-wise detection on one scan: lesions (volume mm³, detected?) and predicted components."""

    lesion_mm3: np.ndarray
    lesion_hit: np.ndarray
    predicted: int
    predicted_true: int

    @property
    def false_positives(self) -> int:
        return self.predicted - self.predicted_true


def detect(pred: np.ndarray, truth: np.ndarray, voxel_mm3: float) -> Detection:
    """Match 3D connected components (26-connectivity): a lesion is detected when a predicted
    component overlaps it; a predicted component is a false positive when it overlaps no lesion."""
    les, n_les = ndimage.label(np.asarray(truth, bool), structure=FULL)
    comp, n_comp = ndimage.label(np.asarray(pred, bool), structure=FULL)
    sizes = np.bincount(les.ravel(), minlength=n_les + 1)[1:] * voxel_mm3
    overlap = (les > 0) & (comp > 0)
    hit = np.zeros(n_les, bool)
    hit[np.unique(les[overlap]) - 1] = True
    true_comps = len(np.unique(comp[overlap]))
    return Detection(sizes, hit, int(n_comp), int(true_comps))


def detection_summary(found: list[Detection], size_edges: list[float]) -> dict:
    """Sensitivity, FP components per scan, precision, F1, and sensitivity per lesion size stratum."""
    sizes = np.concatenate([d.lesion_mm3 for d in found]) if found else np.zeros(0)
    hits = np.concatenate([d.lesion_hit for d in found]) if found else np.zeros(0, bool)
    pred = sum(d.predicted for d in found)
    true = sum(d.predicted_true for d in found)
    sens = float(hits.mean()) if hits.size else float("nan")
    prec = true / pred if pred else float("nan")
    f1 = 2 * prec * sens / (prec + sens) if pred and hits.size and (prec + sens) > 0 else 0.0 if hits.size else float("nan")
    out = {"lesions": int(hits.size), "detected": int(hits.sum()), "sensitivity": sens,
           "fp_per_scan": sum(d.false_positives for d in found) / max(len(found), 1),
           "precision": float(prec), "f1": float(f1), "by_size": []}
    edges = [0.0, *size_edges, float("inf")]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (sizes >= lo) & (sizes < hi)
        out["by_size"].append({"min_mm3": lo, "max_mm3": hi, "lesions": int(sel.sum()),
                               "sensitivity": float(hits[sel].mean()) if sel.any() else float("nan")})
    return out


def case_auroc(scores: np.ndarray, diseased: np.ndarray) -> float:
    """AUROC of case scores for diseased vs healthy cases (NaN unless both are present)."""
    d = np.asarray(diseased, bool)
    if d.all() or not d.any():
        return float("nan")
    return float(roc_auc_score(d, np.asarray(scores, np.float64)))


def percentile_ci(values: list[float]) -> list[float]:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return [float("nan"), float("nan")] if v.size == 0 else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
