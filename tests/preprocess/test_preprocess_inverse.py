"""Cached arrays mapped back onto the original scan's grid (round trip on real scans)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medmae.preprocess.cache import open_case
from medmae.io.read import read_volume
from medmae.preprocess.body import body_mask
from medmae.preprocess.case import preprocess_case
from medmae.preprocess.inverse import save_on_source_grid, to_source_grid
from medmae.preprocess.spatial import shift_affine

from pp_helpers import CT, CT_SEG, MR, ct_case, mr_case, small_config

SPACING = (2.5, 2.0, 2.75)  # not the 3 mm source grid, so the round trip really resamples


@pytest.fixture(scope="module")
def coarse(tmp_path_factory):
    cache = tmp_path_factory.mktemp("coarse")
    cfg = small_config(spacing=SPACING)
    for case in (ct_case(), mr_case()):
        preprocess_case(case, cfg, cache)
    return {cid: open_case(cache / "cases" / cid) for cid in ("ct", "mr")}, cfg


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("cid,path,modality", [("ct", CT, "CT"), ("mr", MR, "MR")])
def test_body_round_trip_overlaps_source_body(coarse, cid, path, modality):
    cases, cfg = coarse
    c, src = cases[cid], read_volume(path)
    back = to_source_grid(np.asarray(c.map("body")), c.meta, order=0)
    assert back.shape == src.shape
    ref = body_mask(src.array[None].astype(np.float32), modality, src.spacing, cfg.body)
    assert _dice(back > 0.5, ref) > 0.9


@pytest.mark.parametrize("cid,path", [("ct", CT), ("mr", MR)])
def test_image_round_trip_correlates_with_source(coarse, cid, path):
    cases, _ = coarse
    c, src = cases[cid], read_volume(path)
    inside = to_source_grid(np.asarray(c.map("body")), c.meta, order=0) > 0.5

    def r(meta):
        back = to_source_grid(np.asarray(c.image[0]), meta, order=1)
        return np.corrcoef(back[inside], src.array[inside].astype(np.float64))[0, 1]

    assert r(c.meta) > 0.95
    off = {**c.meta, "affine": shift_affine(c.affine, np.array([1, 0, 0]))}
    assert r(off) < 0.95  # one cached voxel of misregistration is caught


def test_anatomy_round_trip_keeps_organs(coarse):
    cases, _ = coarse
    c, seg = cases["ct"], read_volume(CT_SEG).array
    back = to_source_grid(np.asarray(c.map("anatomy")), c.meta, order=0).astype(np.int16)
    liver = seg == 5
    assert _dice(back == 5, liver) > 0.85
    assert set(np.unique(back)) <= set(np.unique(seg))  # nearest neighbour invents no ids


def test_outside_the_crop_gets_fill(coarse):
    cases, _ = coarse
    c = cases["ct"]
    ones = np.ones(c.image.shape[1:], np.float32)
    back = to_source_grid(ones, c.meta, order=0, fill=-1.0)
    assert (back == -1.0).any() and (back == 1.0).mean() > 0.5  # table/air rows were cropped away


def test_saved_nifti_overlays_the_source(coarse, tmp_path):
    cases, _ = coarse
    c, src = cases["mr"], read_volume(MR)
    out = save_on_source_grid(np.asarray(c.map("body")), c.meta, tmp_path / "body.nii.gz", order=0,
                              dtype=np.uint8)
    img = nib.load(str(out))
    assert img.shape == src.shape and img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, src.affine, atol=1e-4)
    assert set(np.unique(np.asarray(img.dataobj))) == {0, 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_wrong_shape_is_refused(coarse):
    cases, _ = coarse
    with pytest.raises(ValueError, match="cached grid"):
        to_source_grid(np.zeros((3, 3, 3)), cases["ct"].meta)


def test_nan_fill_marks_only_voxels_outside_the_crop(coarse):
    """fill=np.nan used to turn every voxel NaN (the fill was subtracted before resampling)."""
    cases, _ = coarse
    c = cases["ct"]
    image = np.asarray(c.image[0])
    nan_back = to_source_grid(image, c.meta, order=1, fill=np.nan)
    zero_back = to_source_grid(image, c.meta, order=1, fill=0.0)
    inside = np.isfinite(nan_back)
    assert 0.3 < inside.mean() < 1.0  # the crop covers the body, not the whole source grid
    np.testing.assert_allclose(nan_back[inside], zero_back[inside], atol=1e-5)
    assert np.all(zero_back[~inside] == 0.0)
    body_back = to_source_grid(np.asarray(c.map("body"), np.float32), c.meta, order=0, fill=np.nan)
    near = np.isfinite(body_back)  # nearest reaches half a voxel further than linear
    assert np.all(near[inside]) and (near.sum() - inside.sum()) < 0.1 * inside.sum()
    assert np.nanmax(body_back) == 1.0
