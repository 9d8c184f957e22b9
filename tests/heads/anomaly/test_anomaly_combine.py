"""Combination rules of the MAE map and the baseline (issue 20, item 5)."""

import numpy as np
import pytest
from pydantic import ValidationError

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.maps import combined_map


def _maps():
    """Healthy noise; a lesion both maps see; a bright normal structure only the baseline sees."""
    rng = np.random.default_rng(1)
    body = np.ones((40, 40, 40), bool)
    mae = np.maximum(rng.normal(0, 0.2, body.shape), 0).astype(np.float32)
    base = np.maximum(rng.normal(0, 1.0, body.shape), 0).astype(np.float32)
    lesion = np.zeros(body.shape, bool)
    lesion[5:10, 5:10, 5:10] = True
    vessel = np.zeros(body.shape, bool)
    vessel[25:35, 20, 20] = True
    mae[lesion] += 1.2
    base[lesion] += 4.0
    base[vessel] += 6.0  # brighter than the lesion on the intensity baseline, reconstructed well by the MAE
    return mae, base, body, lesion, vessel


@pytest.mark.parametrize("rule", ["geometric", "min"])
def test_rules_that_need_both_maps_rank_the_lesion_above_the_baselines_bright_structure(rule):
    mae, base, body, lesion, vessel = _maps()
    mean = combined_map(mae, base, body, "mean")
    both = combined_map(mae, base, body, rule)
    assert np.isfinite(both).all() and both.min() >= 0
    print(rule, f"lesion {both[lesion].mean():.2f} vessel {both[vessel].mean():.2f}; mean rule "
                f"lesion {mean[lesion].mean():.2f} vessel {mean[vessel].mean():.2f}")
    assert both[lesion].mean() > 2 * both[vessel].mean()
    assert both[lesion].mean() / both[vessel].mean() > mean[lesion].mean() / mean[vessel].mean()


def test_mean_is_the_default_and_the_rule_is_validated():
    assert AnomalyConfig().score.combine == "mean"
    with pytest.raises(ValidationError):
        AnomalyConfig.model_validate({"score": {"combine": "max"}})
    mae, base, body, _, _ = _maps()
    with pytest.raises(ValueError, match="unknown combination rule"):
        combined_map(mae, base, body, "max")
