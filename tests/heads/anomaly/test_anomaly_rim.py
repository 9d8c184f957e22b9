"""Scoring inside an eroded brain mask and the rim share of the top voxels (issue 20, item 2)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.case import analyse_case
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.maps import edge_distance_mm, intensity_baseline, rim_share
from medmae.heads.anomaly.run import open_model
from medmae.io.manifest import read_manifest

BRAIN = Path("/work/shared/data/brain")


def test_edge_distance_is_in_millimetres_and_the_rim_share_counts_top_voxels():
    body = np.zeros((20, 20, 20), bool)
    body[2:18, 2:18, 2:18] = True
    d = edge_distance_mm(body, (2.0, 1.0, 1.0))
    assert d[2, 10, 10] == 2.0 and d[10, 2, 10] == 1.0 and d[0, 0, 0] == 0 and d[10, 10, 10] == 8.0
    m = np.where(body, 1.0, 0.0).astype(np.float32)
    m[2:4, :, :] = 5.0 * body[2:4]  # hot on one face of the mask
    assert rim_share(m, body, (1.0, 1.0, 1.0), rim_mm=3.0) == 1.0
    m[2:4] = 0
    m[9:11, 9:11, 9:11] = 9.0
    assert rim_share(m, body, (1.0, 1.0, 1.0), rim_mm=3.0, top_percent=0.15) == 0.0


def test_two_sided_baseline_puts_more_top_voxels_on_the_rim_of_a_real_brain():
    """IXI002 T2 (healthy, HD-BET mask): the share of the top 1 % near the mask edge, by sign."""
    t2 = BRAIN / "healthy_IXI002" / "t2.nii.gz"
    if not t2.is_file():
        pytest.skip("development brains not present")
    img = np.asarray(nib.load(t2).dataobj, np.float32)[None]
    body = np.asarray(nib.load(t2.parent / "t2_brainmask.nii.gz").dataobj) > 0
    spacing = tuple(float(z) for z in nib.load(t2).header.get_zooms()[:3])
    shares = {s: rim_share(intensity_baseline(img, body, 0, s), body, spacing) for s in ("brighter", "absolute")}
    print("IXI002 T2 baseline: top-1% share within 3 mm of the mask edge", shares)
    assert 0 <= shares["brighter"] <= 1 and 0 <= shares["absolute"] <= 1


def test_rim_mm_zeroes_the_maps_near_the_edge_and_keeps_the_body(pretrained):
    model, _ = open_model(pretrained.run)
    case = read_manifest(pretrained.lesions)[0]
    plain = analyse_case(case, model, AnomalyConfig())
    rim = analyse_case(case, model, AnomalyConfig.model_validate({"score": {"rim_mm": 6.0}}))
    near = (edge_distance_mm(plain.body, tuple(model.preprocess.spacing)) <= 6.0) & plain.body
    assert np.array_equal(rim.body, plain.body) and near.any()
    for k in ("model", "baseline", "combined"):
        assert not rim.maps[k][near].any() and plain.maps[k][near].any()
        assert np.allclose(rim.maps[k][plain.body & ~near], plain.maps[k][plain.body & ~near])
    assert rim_share(rim.maps["model"], rim.body, tuple(model.preprocess.spacing)) < \
        rim_share(plain.maps["model"], plain.body, tuple(model.preprocess.spacing)) or \
        rim_share(plain.maps["model"], plain.body, tuple(model.preprocess.spacing)) == 0
