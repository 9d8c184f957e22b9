"""The development-set measurement's own metric and override parsing (benchmarks/brain_anomaly_dev.py)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import brain_anomaly_dev as dev  # noqa: E402

from medmae.heads.anomaly.metrics import dice  # noqa: E402


def test_oracle_dice_is_the_best_dice_over_every_threshold_with_ties_kept_together():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.1
    s = np.round(rng.random(400) + 0.5 * y, 1)  # many ties
    best = max(dice(s >= t, y) for t in np.unique(s))
    assert np.isclose(dev.oracle_dice(y, s), best)
    assert dev.oracle_dice(np.array([True, False]), np.array([1.0, 1.0])) == 2 / 3  # a tie is all or none


def test_variant_overrides_become_nested_settings():
    assert dev._nested(["score.normalise=edge", "score.rim_mm=3", "score.roi=[64,64,64]"]) == {
        "score": {"normalise": "edge", "rim_mm": 3, "roi": [64, 64, 64]}}
