"""A study's anomaly step fails when too many of its scans cannot be scored (evaluation.max_bad_share)."""

from pathlib import Path

import pytest

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.studies.kinds import _bad_share


def test_bad_share_above_the_limit_fails_the_step():
    bad = [("a.nii.gz", "unreadable")]
    _bad_share("evaluation", bad, 4, 0.2, Path("bad.csv"))  # 1 of 5: at the limit, goes on
    with pytest.raises(RuntimeError, match=r"1 of 4 evaluation scans could not be scored.*max_bad_share=0.2.*bad.csv"):
        _bad_share("evaluation", bad, 3, 0.2, Path("bad.csv"))
    with pytest.raises(RuntimeError, match="0 of|1 of 2 calibration"):
        _bad_share("calibration", bad, 1, 0.0, Path("bad.csv"))
    _bad_share("calibration", [], 0, 0.0, Path("bad.csv"))  # nothing to judge
    assert AnomalyConfig().evaluation.max_bad_share == 0.2
