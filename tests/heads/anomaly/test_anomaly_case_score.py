"""The case score: the case with more abnormal tissue ranks higher (issue 20, item 8)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.maps import abnormal_ml, case_statistic, intensity_baseline

BRAIN = Path(__file__).resolve().parents[4] / "shared" / "data" / "brain"  # ../shared beside the repository


def test_abnormal_volume_grows_with_the_lesion_where_the_top_mean_saturates():
    rng = np.random.default_rng(0)
    body = np.ones((50, 50, 50), bool)
    small, large = (np.abs(rng.normal(0, 1, body.shape)).astype(np.float32) for _ in range(2))
    small[:11, :11, :11] = 8.0  # 1331 voxels: fills the top 1 % (1250) by itself
    large[:16, :16, :16] = 6.0  # 4096 voxels, a little less intense: the top mean ranks it lower
    for m in (small, large):
        assert abnormal_ml(m, body, 3.0, 1e-3) == pytest.approx(((m > 3 * 1.4826 * np.median(m)).sum()) * 1e-3)
    assert case_statistic(large, body, "abnormal_ml", 3.0, 1.0, 1e-3) > case_statistic(small, body, "abnormal_ml", 3.0, 1.0, 1e-3)
    assert case_statistic(large, body, "top_mean", 3.0, 1.0, 1e-3) < case_statistic(small, body, "top_mean", 3.0, 1.0, 1e-3)
    assert AnomalyConfig().score.case_statistic == "abnormal_ml"


def test_on_the_gliomas_the_larger_tumour_ranks_higher():
    """FLAIR, one-sided intensity baseline: TCGA-FG-6692 (30 ml pseudo-label) above TCGA-DU-7294 (24 ml)."""
    if not (BRAIN / "glioma_TCGA-FG-6692").is_dir():
        pytest.skip("development brains not present")
    scores, volumes = {}, {}
    for case in ("glioma_TCGA-DU-7294", "glioma_TCGA-FG-6692"):
        img = np.asarray(nib.load(BRAIN / case / "flair.nii.gz").dataobj, np.float32)[None, ::2, ::2, ::2]
        lesion = np.asarray(nib.load(BRAIN / case / "tumour_pseudolabel.nii.gz").dataobj)[::2, ::2, ::2] > 0
        body = img[0] > 0
        m = intensity_baseline(img, body, 0, "brighter")
        scores[case] = case_statistic(m, body, "abnormal_ml", 3.0, 1.0, 8e-3)
        volumes[case] = lesion.sum() * 8e-3
    print(scores, volumes)
    big, small = sorted(volumes, key=volumes.get, reverse=True)
    assert scores[big] > scores[small]
