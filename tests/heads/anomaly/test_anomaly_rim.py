"""False alarms on the rim and in CSF (issue 20, item 2): scoring inside an eroded mask,
errors normalised by depth (score.normalise=edge), and the shares that measure them."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.case import analyse_case
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.falsealarm import csf_mask, false_alarm_shares
from medmae.heads.anomaly.maps import edge_distance_mm, edge_normalised, intensity_baseline
from medmae.heads.anomaly.metrics import voxel_auc
from medmae.heads.anomaly.run import open_model
from medmae.io.manifest import read_manifest
from medmae.synth.inserted import insert

BRAIN = Path(__file__).resolve().parents[4] / "shared" / "data" / "brain"  # ../shared beside the repository


def _rim(map_, body, spacing, top_percent=1.0):
    return false_alarm_shares(map_, body, spacing, np.zeros_like(body), top_percent=top_percent)["rim"]


def test_edge_distance_is_in_millimetres_and_the_shares_count_top_voxels():
    body = np.zeros((20, 20, 20), bool)
    body[2:18, 2:18, 2:18] = True
    d = edge_distance_mm(body, (2.0, 1.0, 1.0))
    assert d[2, 10, 10] == 2.0 and d[10, 2, 10] == 1.0 and d[0, 0, 0] == 0 and d[10, 10, 10] == 8.0
    m = np.where(body, 1.0, 0.0).astype(np.float32)
    m[2:4, :, :] = 5.0 * body[2:4]  # hot on one face of the mask
    assert _rim(m, body, (1.0, 1.0, 1.0)) == 1.0
    m[2:4] = 0
    m[9:11, 9:11, 9:11] = 9.0
    csf = np.zeros_like(body)
    csf[9:11, 9:11, 9:10] = True  # half of the hot cube
    shares = false_alarm_shares(m, body, (1.0, 1.0, 1.0), csf, top_percent=0.19)  # 8 of 4096 voxels
    assert shares == {"rim": 0.0, "csf": 0.5, "rim_or_csf": 0.5}


def test_csf_is_on_the_sequences_side_and_never_the_lesion():
    rng = np.random.default_rng(0)
    body = np.ones((12, 12, 12), bool)
    img = rng.choice([0.0, 1.0, 2.0], size=body.shape) + rng.normal(0, 0.05, body.shape)
    label = np.zeros(body.shape, np.int16)
    label[:3] = 1
    # multi-Otsu's thresholds are histogram bins: a few voxels at a class's tail may fall across
    assert (csf_mask(img, body, "t2") == (img > 1.5)).mean() > 0.98
    assert (csf_mask(img, body, "flair") == (img < 0.5)).mean() > 0.98
    assert not (csf_mask(img, body, "t2", label) & (label > 0)).any()
    assert csf_mask(img, body, "t2", label)[3:].sum() == csf_mask(img, body, "t2")[3:].sum()


def _ixi():
    t2 = BRAIN / "healthy_IXI002" / "t2.nii.gz"
    if not t2.is_file():
        pytest.skip("development brains not present")
    img = np.asarray(nib.load(t2).dataobj, np.float32)
    body = np.asarray(nib.load(t2.parent / "t2_brainmask.nii.gz").dataobj) > 0
    return img, body, tuple(float(z) for z in nib.load(t2).header.get_zooms()[:3])


def test_edge_normalisation_moves_top_voxels_off_the_rim_of_a_real_brain_and_keeps_a_deep_lesion():
    """IXI002 T2 (real, healthy, HD-BET mask) with a 10 mm ball made 60 % brighter deep in the
    brain. The bright-side intensity z-score is a real rim-heavy map (CSF over the cortex is
    bright on T2): normalised by depth, fewer of its top 1 % lie within 3 mm of the edge, and the
    lesion is found at least as well."""
    img, body, spacing = _ixi()
    d = edge_distance_mm(body, spacing)
    centre = np.unravel_index(np.argmax(d), d.shape)
    grid = np.indices(body.shape).astype(np.float32)
    ball = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= 10.0 ** 2
    scan, label = insert(img, ball, body, spacing, gain=0.6)
    raw = intensity_baseline(scan[None], body, 0, "brighter")
    normed = edge_normalised(raw, body, spacing)
    before, after = _rim(raw, body, spacing), _rim(normed, body, spacing)
    print(f"IXI002 T2 brighter z: top-1% within 3 mm of the edge {before:.3f} -> {after:.3f}")
    assert before > 0.2 and after < 0.5 * before
    assert voxel_auc(label[body], normed[body])[1] >= voxel_auc(label[body], raw[body])[1]
    assert np.array_equal(normed > 0, raw > 0)  # a rescaling per band: no voxel gained or lost


def test_insert_brightens_inside_the_brain_only():
    img, body, spacing = _ixi()
    lesion = np.zeros_like(body)
    lesion[100:140, 100:140, 60:80] = True
    out, label = insert(img, lesion, body, spacing, gain=0.5)
    assert not (label & ~body).any() and label.sum() > 0.5 * (lesion & body).sum()
    assert np.array_equal(out[~body], img[~body])
    assert np.allclose(out[label & (img > 0)] / img[label & (img > 0)], 1.25, atol=0.26)
    with pytest.raises(ValueError, match="differ in shape"):
        insert(img, lesion[1:], body, spacing)


def test_rim_mm_zeroes_the_maps_near_the_edge_and_keeps_the_body(pretrained):
    model, _ = open_model(pretrained.run)
    case = read_manifest(pretrained.lesions)[0]
    spacing = tuple(model.preprocess.spacing)
    plain = analyse_case(case, model, AnomalyConfig())
    rim = analyse_case(case, model, AnomalyConfig.model_validate({"score": {"rim_mm": 6.0}}))
    near = (edge_distance_mm(plain.body, spacing) <= 6.0) & plain.body
    assert np.array_equal(rim.body, plain.body) and near.any()
    for k in ("model", "baseline", "combined"):
        assert not rim.maps[k][near].any() and plain.maps[k][near].any()
        assert np.allclose(rim.maps[k][plain.body & ~near], plain.maps[k][plain.body & ~near])
    edge = analyse_case(case, model, AnomalyConfig.model_validate({"score": {"normalise": "edge"}}))
    assert np.allclose(edge.maps["model"], edge_normalised(plain.maps["model"], plain.body, spacing))
    assert np.array_equal(edge.maps["baseline"], plain.maps["baseline"])
