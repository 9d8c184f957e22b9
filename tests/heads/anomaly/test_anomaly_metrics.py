"""Evaluation metrics exact on small hand-made inputs, against scikit-learn where it has them."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medmae.heads.anomaly.calibration import remove_small
from medmae.heads.anomaly.maps import case_score, robust_z
from medmae.heads.anomaly.metrics import (bin_edges, case_auroc, detect, detection_summary, dice, dice_curve,
                                          hist_auprc, hist_auroc, histograms, voxel_auc)


def test_voxel_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = rng.normal(size=500) + 1.5 * y
    auroc, auprc = voxel_auc(y, s)
    assert auroc == roc_auc_score(y, s) and auprc == average_precision_score(y, s)
    # with one distinct score per bin the histogram versions are exact too
    edges = bin_edges(s, 1000)
    assert len(edges) == 500
    h = histograms(y, s, edges)
    assert hist_auroc(h) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert hist_auprc(h) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert np.isnan(voxel_auc(np.zeros(5, bool), np.arange(5.0))[0])


def test_dice_and_its_curve_by_hand():
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 1, 0, 0], bool)
    assert dice(pred, truth) == pytest.approx(2 * 2 / (3 + 3))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    edges = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    curve = dice_curve(histograms(truth, s, edges))
    # threshold >= 0.3: {0.9, 0.8, 0.3, 0.7} -> tp 3, fp 1 -> 6/7; >= 0.8: tp 2, fp 0, fn 1 -> 4/5
    assert curve[2] == pytest.approx(6 / 7) and curve[4] == pytest.approx(4 / 5) and curve.max() == pytest.approx(6 / 7)


def test_lesion_detection_by_hand():
    truth = np.zeros((20, 20, 20), bool)
    truth[2:5, 2:5, 2:5] = True          # 27 voxels, found
    truth[10:12, 10:12, 10:12] = True    # 8 voxels, missed
    pred = np.zeros_like(truth)
    pred[4:6, 4:6, 4:6] = True           # overlaps lesion 1
    pred[15:17, 2:4, 2:4] = True         # false positive
    pred[18, 18, 18] = True              # false positive (single voxel)
    d = detect(pred, truth, voxel_mm3=2.0)
    assert d.lesion_mm3.tolist() == [54.0, 16.0] and d.lesion_hit.tolist() == [True, False]
    assert d.predicted == 3 and d.predicted_true == 1 and d.false_positives == 2
    summary = detection_summary([d, detect(np.zeros_like(truth), np.zeros_like(truth), 2.0)], [20.0])
    assert summary["sensitivity"] == 0.5 and summary["fp_per_scan"] == 1.0
    assert summary["precision"] == pytest.approx(1 / 3) and summary["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert [b["sensitivity"] for b in summary["by_size"]] == [0.0, 1.0]
    kept = remove_small(pred, (1.0, 1.0, 1.0), 2.0)
    assert kept.sum() == 16 and not kept[18, 18, 18]


def test_case_auroc_score_and_robust_z():
    assert case_auroc(np.array([3.0, 1.0, 2.0, 0.5]), np.array([1, 0, 1, 0], bool)) == 1.0
    assert case_auroc(np.array([1.0, 2.0]), np.array([1, 0], bool)) == roc_auc_score([1, 0], [1.0, 2.0])
    assert np.isnan(case_auroc(np.array([1.0, 2.0]), np.array([1, 1], bool)))
    m = np.arange(100, dtype=np.float32).reshape(4, 5, 5)
    body = np.ones_like(m, bool)
    assert case_score(m, body, 2.0) == pytest.approx(98.5)  # top 2 of 100 voxels
    z = robust_z(m, body)
    assert z[body].mean() == pytest.approx(0.0, abs=0.02) and z.flat[0] == pytest.approx(-49.5 / (1.4826 * 25))


def same_grid_case(score, lesion, body=None, case_id="c", score_value=1.0, binary=None):
    """A ScoredCase whose model grid is its source grid (1 mm voxels)."""
    from pathlib import Path

    from medmae.heads.anomaly.grid import GridArrays
    from medmae.heads.anomaly.scored import ScoredCase

    body = np.ones(score.shape, bool) if body is None else body
    grid = GridArrays({"model": score}, body, binary, np.eye(4), (1.0, 1.0, 1.0), lesion)
    return ScoredCase(case_id, {"model": score}, body, lesion, not lesion.any(), 1.0, {"model": score_value},
                      Path(case_id), grid)


def test_oracle_dice_is_an_upper_bound_of_the_calibrated_rule():
    """Scattered single-voxel false positives score above the lesion: a bare threshold cannot keep
    the lesion without them, the calibrated rule's small-component removal can. The oracle must
    count that rule among its candidates (it was 0.002 below Dice@FPR in the demo before)."""
    from medmae.heads.anomaly.config import EvaluationConfig
    from medmae.heads.anomaly.evaluate import evaluate_map

    rng = np.random.default_rng(0)
    score = rng.uniform(0.0, 0.5, (24, 24, 24))
    lesion = np.zeros(score.shape, bool)
    lesion[8:14, 8:14, 8:14] = True
    score[lesion] = 0.8
    specks = np.zeros(score.shape, bool)
    specks[1::3, 1::3, 1::3] = True  # isolated voxels, none touching the lesion
    specks[6:16, 6:16, 6:16] = False
    score[specks] = 0.9
    case = same_grid_case(score, lesion)
    res = evaluate_map([case], "model", EvaluationConfig(bootstrap=0), {"0.01": 0.7}, "0.01", min_mm3=8.0)
    m = res.metrics
    assert m["dice_at_fpr"] == pytest.approx(1.0)
    assert m["oracle_dice"] == pytest.approx(1.0)
    assert m["oracle_threshold"] == 0.7  # the rule that reached it
    # without the component removal no threshold gets near it: the specks outnumber half the lesion
    res_plain = evaluate_map([case], "model", EvaluationConfig(bootstrap=0), None, None, min_mm3=0.0)
    assert res_plain.metrics["oracle_dice"] < 0.9
