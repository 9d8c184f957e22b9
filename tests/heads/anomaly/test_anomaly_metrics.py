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


def test_histogram_auroc_counts_ties_within_a_bin_as_half():
    # negatives at 0, 0, 1, 1 and positives at 1, 1: each positive beats 2 negatives and ties 2
    y = np.array([0, 0, 0, 0, 1, 1], bool)
    s = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    h = histograms(y, s, np.array([0.0, 1.0]))
    assert h.tolist() == [[2, 2], [0, 2]]
    assert hist_auroc(h) == pytest.approx(0.75) == roc_auc_score(y, s)
    # one coarse bin holding everything: all pairs tied
    assert hist_auroc(histograms(y, s, np.array([0.0]))) == pytest.approx(0.5)


def test_bin_edges_give_every_lesion_score_its_own_bin():
    rng = np.random.default_rng(3)
    y = rng.random(20000) < 0.01
    s = rng.normal(size=y.size) + 2.0 * y
    assert y.sum() < 256
    h = histograms(y, s, bin_edges(s, 256, s[y]))
    assert len(bin_edges(s, 256, s[y])) < 1000
    assert hist_auroc(h) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert hist_auprc(h) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_one_component_spanning_two_lesions_finds_both_and_counts_once():
    truth = np.zeros((12, 12, 12), bool)
    truth[2:4, 2:4, 2:4] = True
    truth[2:4, 7:9, 2:4] = True              # a second lesion, 3 voxels away
    pred = np.zeros_like(truth)
    pred[2:4, 2:9, 2:4] = True               # one component bridging both
    d = detect(pred, truth, voxel_mm3=1.0)
    assert d.lesion_hit.tolist() == [True, True] and d.predicted == 1 and d.predicted_true == 1
    summary = detection_summary([d], [])
    assert summary["detected"] == 2 and summary["sensitivity"] == 1.0 and summary["precision"] == 1.0
    assert summary["f1"] == 1.0 and summary["fp_per_scan"] == 0.0


def _simulated_cases(rng, n, voxels=60, lesion=10):
    """Cases of 60 voxels, 10 of them lesion; healthy ~ N(0, 1), lesion ~ N(mu_c, 1), mu_c ~ N(1, 0.7)."""
    cases = []
    for i in range(n):
        y = np.zeros(voxels, bool)
        y[:lesion] = True
        s = rng.normal(size=voxels) + y * rng.normal(1.0, 0.7)
        cases.append(same_grid_case(s.astype(np.float32), y, case_id=f"c{i}", score_value=float(s.max())))
    return cases


def test_bootstrap_intervals_resample_cases_and_cover_the_truth():
    from scipy.stats import norm

    from medmae.heads.anomaly.config import EvaluationConfig
    from medmae.heads.anomaly.evaluate import evaluate_map

    truth = float(norm.cdf(1.0 / np.sqrt(2.0 + 0.49)))  # P(lesion voxel > healthy voxel), pooled
    rng = np.random.default_rng(0)
    cfg = EvaluationConfig(bootstrap=100, bins=16)
    two = evaluate_map(_simulated_cases(rng, 2), "model", cfg, None, None, 0.0)
    lo, hi = two.ci["voxel_auroc"]
    assert hi - lo > 0 and two.ci_resamples["voxel_auroc"] == 100
    covered, widths = 0, []
    for rep in range(60):
        res = evaluate_map(_simulated_cases(rng, 12), "model", cfg.model_copy(update={"seed": rep}), None, None, 0.0)
        lo, hi = res.ci["voxel_auroc"]
        covered += lo <= truth <= hi
        widths.append(hi - lo)
    print(f"coverage of the 95% interval: {covered / 60:.2f}, mean width {np.mean(widths):.3f}")
    assert 0.8 <= covered / 60 <= 1.0 and np.mean(widths) > 0.02


def test_resamples_without_a_value_are_counted_not_hidden():
    from medmae.heads.anomaly.config import EvaluationConfig
    from medmae.heads.anomaly.evaluate import evaluate_map

    rng = np.random.default_rng(1)
    sick = _simulated_cases(rng, 1)[0]
    healthy = same_grid_case(rng.normal(size=60).astype(np.float32), np.zeros(60, bool), case_id="h",
                             score_value=0.0)
    res = evaluate_map([sick, healthy], "model", EvaluationConfig(bootstrap=200, bins=16), None, None, 0.0)
    # a resample of two healthy copies has no lesion: no voxel AUROC (about 1 in 4 resamples)
    used = res.ci_resamples["voxel_auroc"]
    assert 100 < used < 200 and res.bootstrap == 200
    assert res.ci_resamples["case_auroc"] < 200


def test_combined_map_is_invariant_to_each_maps_units():
    from medmae.heads.anomaly.maps import combined_map

    rng = np.random.default_rng(2)
    body = np.ones((8, 8, 8), bool)
    body[0] = False
    a, b = rng.gamma(2.0, size=body.shape).astype(np.float32), rng.gamma(2.0, size=body.shape).astype(np.float32)
    ref = combined_map(a, b, body)
    assert np.allclose(combined_map(a, 10 * b, body), ref, atol=1e-5)
    assert np.allclose(combined_map(1000 * a, b, body), ref, atol=1e-5)
    assert ref[~body].max() == 0


@pytest.mark.parametrize("section,change", [("score", {"score": {"draws": 8}}), ("score", {"score": {"map": "brighter"}}),
                                            ("baseline", {"baseline": {"channel": 1}}),
                                            ("baseline", {"baseline": {"sign": "darker"}})])
def test_settings_digest_covers_each_section(section, change):
    from medmae.heads.anomaly.calibration import settings_digest
    from medmae.heads.anomaly.config import AnomalyConfig

    assert settings_digest(AnomalyConfig.model_validate(change)) != settings_digest(AnomalyConfig()), section


def test_settings_digest_ignores_what_does_not_change_a_map():
    from medmae.heads.anomaly.calibration import settings_digest
    from medmae.heads.anomaly.config import AnomalyConfig

    same = {"score": {"device": "cpu", "sw_batch_size": 7}, "evaluation": {"bootstrap": 3}}
    assert settings_digest(AnomalyConfig.model_validate(same)) == settings_digest(AnomalyConfig())


def test_every_metric_scores_the_same_voxels_inside_the_body():
    """Half of a lesion lies outside the body mask: no metric counts it, and its share is reported."""
    from medmae.heads.anomaly.config import EvaluationConfig

    score = np.zeros((16, 16, 16), np.float32)
    lesion = np.zeros(score.shape, bool)
    lesion[4:8, 4:8, 4:12] = True
    body = np.ones(score.shape, bool)
    body[:, :, 8:] = False                     # the lesion's far half is outside the body
    score[4:8, 4:8, 4:8] = 1.0                 # the map flags exactly the half inside
    case = same_grid_case(score, lesion, body)
    case.grid.binary = (score > 0.5) & body
    settings = {"calibration": {"thresholds": {"model": {"0.01": 0.5}}, "binary_fpr": 0.01,
                                "min_component_mm3": 0.0}}
    import medmae.heads.anomaly.evaluate as ev

    (res,) = evaluate_cases_for_model(ev, [case], settings, EvaluationConfig(bootstrap=0))
    m = res.metrics
    assert m["dice_at_fpr"] == 1.0 and m["oracle_dice"] == 1.0 and m["sensitivity"] == 1.0
    assert m["voxel_auroc"] == 1.0 and m["lesion_outside_body"] == 0.5
    assert res.cases[0]["lesion_outside_body"] == 0.5


def evaluate_cases_for_model(ev, cases, settings, cfg):
    """evaluate_cases restricted to the model map (the hand-made cases carry no other)."""
    return ev.evaluate_cases(cases, settings, cfg, names=("model",))
