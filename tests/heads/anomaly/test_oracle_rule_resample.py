"""A bootstrap resample whose calibrated rule beats every bin edge does not crash (the demo
study stopped on it: the resamples are scored without the rule's threshold)."""

import math

import numpy as np

from medmae.heads.anomaly.evaluate import SourceCase, source_metrics


def test_rule_better_than_every_edge_without_its_threshold():
    edges = np.array([0.0, 0.5, 1.0])
    # healthy voxels score as high as the lesion's: no edge separates them (best Dice 0.5)
    sick = SourceCase(hist=np.array([[0, 0, 10], [0, 0, 10]]), rule=(10, 0, 0), diseased=True, score=1.0)
    healthy = SourceCase(hist=np.array([[5, 0, 0], [0, 0, 0]]), rule=None, diseased=False, score=0.0)
    out, thr = source_metrics([sick, healthy, sick], edges)  # a resample: no rule threshold given
    assert out["oracle_dice"] == 1.0 and math.isnan(thr)
    out, thr = source_metrics([sick, healthy], edges, rule_thr=0.7)  # the evaluation itself
    assert out["oracle_dice"] == 1.0 and thr == 0.7
