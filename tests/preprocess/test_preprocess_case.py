"""preprocess_case on real scans: geometry, normalisation, body mask, alignment, priors, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medmae.preprocess.cache import open_case
from medmae.io.errors import ScanError
from medmae.io.manifest import Case, sha256_of
from medmae.io.read import read_volume
from medmae.preprocess.case import preprocess_case
from medmae.preprocess.config import config_hash
from medmae.preprocess.inverse import to_source_grid

from pp_helpers import (BRAIN, CT, CT_SEG, LIVER, MR, MR_SEG, SPINE, ct_case, mr_case, save_nifti,
                      small_config)


@pytest.mark.parametrize("cid", ["ct", "mr"])
def test_cached_grid_is_ras_at_target_spacing(cached, cid):
    meta = cached[cid].meta
    affine = cached[cid].affine
    assert "".join(nib.aff2axcodes(affine)) == "RAS"
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [3.0, 3.0, 3.0], atol=1e-6)
    assert meta["orientation"] == "RAS" and meta["spacing"] == [3.0, 3.0, 3.0]


def test_mr_source_was_lps_and_got_flipped(cached):
    meta = cached["mr"].meta
    assert "".join(nib.aff2axcodes(np.array(meta["source_affine"]))) == "LPS"
    assert np.all(np.diag(cached["mr"].affine)[:3] > 0)


@pytest.mark.parametrize("cid", ["ct", "mr"])
def test_shape_and_affine_follow_crop_box(cached, cid):
    c = cached[cid]
    start, stop = (np.array(c.meta["crop_box"][k]) for k in ("start", "stop"))
    assert c.image.shape == (1, *(stop - start))
    assert c.image.dtype == np.float32
    for name in ("body", "anatomy", "tissue", "supervoxels"):
        assert c.map(name).shape == c.image.shape[1:], name
    resampled = np.array(c.meta["resampled_affine"])
    np.testing.assert_allclose(c.affine[:3, 3], resampled[:3, :3] @ start + resampled[:3, 3])


def test_ct_cropped_to_body(cached):
    meta = cached["ct"].meta
    assert meta["shape"][1] < meta["resampled_shape"][0]  # air and table cut away
    assert meta["shape"][2] < meta["resampled_shape"][1]


def test_ct_normalised_to_unit_interval(cached):
    img = np.asarray(cached["ct"].image)
    assert img.min() == 0.0 and img.max() <= 1.0
    assert cached["ct"].meta["normalisation"][0] == {"kind": "ct_window", "window": [-1000.0, 1000.0], "floor": 0.0}


def test_mr_zscored_inside_body(cached):
    c = cached["mr"]
    inside = np.asarray(c.image[0])[np.asarray(c.map("body"), bool)]
    assert abs(inside.mean()) < 1e-3
    assert abs(inside.std() - 1.0) < 1e-3
    p = c.meta["normalisation"][0]
    assert p["kind"] == "zscore" and p["clip"][0] < p["mean"] < p["clip"][1] and p["std"] > 0


@pytest.mark.parametrize("cid", ["ct", "mr"])
def test_body_is_one_component(cached, cid):
    body = np.asarray(cached[cid].map("body"))
    assert set(np.unique(body)) == {0, 1}
    _, n = ndimage.label(body, structure=np.ones((3, 3, 3)))
    assert n == 1


def test_ct_body_covers_the_patient(cached):
    """> 90% of the source voxels denser than -300 HU fall inside the body mapped back."""
    c = cached["ct"]
    body = to_source_grid(np.asarray(c.map("body")), c.meta, order=0) > 0.5
    dense = read_volume(CT).array > -300
    assert (body & dense).sum() / dense.sum() > 0.9
    assert body.mean() < 0.9  # and it is not just the whole volume


def test_anatomy_stays_aligned_liver_hu(cached):
    c = cached["ct"]
    anatomy = np.asarray(c.map("anatomy"))
    liver = np.asarray(c.image[0])[anatomy == LIVER]
    lo, hi = c.meta["normalisation"][0]["window"]
    hu = lo + np.median(liver) * (hi - lo)
    assert 30 <= hu <= 110, hu
    assert liver.size > 1000


def test_mr_anatomy_labels_survive(cached):
    src = np.unique(read_volume(MR_SEG).array)
    out = np.unique(np.asarray(cached["mr"].map("anatomy")))
    assert set(out) <= set(src) and len(out) >= len(src) - 2  # nearest neighbour: no new ids


@pytest.mark.parametrize("cid", ["ct", "mr"])
def test_tissue_classes_fill_the_body(cached, cid):
    c = cached[cid]
    tissue, body = np.asarray(c.map("tissue")), np.asarray(c.map("body"), bool)
    assert set(np.unique(tissue[body])) == {1, 2, 3}
    assert not tissue[~body].any()
    assert len(c.meta["tissue_thresholds"]) == 2


def test_tissue_classes_follow_config(tmp_path):
    cfg = small_config()
    cfg.priors.tissue_classes = 6  # the most allowed; 64 histogram bins keep it fast
    preprocess_case(Case("spine", [str(SPINE)], "MR"), cfg, tmp_path)
    tissue = np.load(tmp_path / "cases" / "spine" / "tissue.npy")
    body = np.load(tmp_path / "cases" / "spine" / "body.npy").astype(bool)
    assert set(np.unique(tissue[body])) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("cid", ["ct", "mr"])
def test_supervoxel_count_near_requested(cached, cid):
    c = cached[cid]
    sv, body = np.asarray(c.map("supervoxels")), np.asarray(c.map("body"), bool)
    n = len(np.unique(sv[body]))
    assert 64 / 2 <= n <= 64 * 2
    assert sv.max() == n == c.meta["supervoxel_count"]  # labels 1..n
    assert not sv[~body].any() and (sv[body] > 0).all()


def test_meta_has_provenance(cached):
    meta = cached["ct"].meta
    assert meta["channels"] == [CT.name] and meta["anatomy"] == CT_SEG.name and meta["label"] == ""
    assert meta["source_sha256"] == sha256_of([CT, CT_SEG])
    assert meta["config_hash"] == config_hash(small_config())
    assert meta["source_shape"] == [122, 101, 30]
    np.testing.assert_allclose(meta["source_spacing"], [3.0, 3.0, 3.0], atol=1e-4)
    assert meta["modality"] == "CT" and cached["mr"].meta["sequence"] == "T1"


@pytest.mark.parametrize("path,codes", [(SPINE, "PSR"), (BRAIN, "LAS")])
def test_other_orientations_and_formats(tmp_path, path, codes):
    src = read_volume(path)
    assert "".join(nib.aff2axcodes(src.affine)) == codes
    preprocess_case(Case("x", [str(path)], "MR"), small_config(), tmp_path)
    c = open_case(tmp_path / "cases" / "x")
    assert "".join(nib.aff2axcodes(c.affine)) == "RAS"
    np.testing.assert_allclose(np.linalg.norm(c.affine[:3, :3], axis=0), 3.0, atol=1e-6)


def test_small_volume_padded_to_min_shape(tmp_path):
    cfg = small_config(min_shape=(48, 48, 48))
    preprocess_case(Case("spine", [str(SPINE)], "MR"), cfg, tmp_path)
    c = open_case(tmp_path / "cases" / "spine")
    assert c.image.shape[1:] == (48, 48, 48)
    start = np.array(c.meta["crop_box"]["start"])
    assert (start < 0).all()  # the spine is 60 mm wide: 20 voxels at 3 mm, padded on both sides
    floor = c.meta["normalisation"][0]["floor"]
    assert np.all(np.asarray(c.image[0, 0]) == np.float32(floor))  # the first plane is padding
    assert not np.asarray(c.map("body"))[0].any()


def test_two_channels_of_one_grid(tmp_path):
    src = read_volume(MR)
    second = save_nifti(np.sqrt(np.clip(src.array, 0, None)).astype(np.float32), src.affine, tmp_path / "mr_b.nii.gz")
    preprocess_case(Case("mc", [str(MR), str(second)], "MR"), small_config(), tmp_path)
    c = open_case(tmp_path / "cases" / "mc")
    body = np.asarray(c.map("body"), bool)
    assert c.image.shape[0] == 2 and c.meta["channels"] == [MR.name, "mr_b.nii.gz"]
    for ch in range(2):
        assert abs(np.asarray(c.image[ch])[body].std() - 1.0) < 1e-3


def test_channel_on_another_grid_is_an_error_naming_both(tmp_path):
    src = read_volume(MR)
    shifted = src.affine.copy()
    shifted[:3, 3] += 7.5
    other = save_nifti(src.array, shifted, tmp_path / "t2_moved.nii.gz")
    with pytest.raises(ScanError) as e:
        preprocess_case(Case("mc", [str(MR), str(other)], "MR"), small_config(), tmp_path)
    assert e.value.path == str(other) and MR.name in e.value.problem
    assert not (tmp_path / "cases" / "mc").exists()


def test_label_of_another_shape_is_an_error_naming_both(tmp_path):
    seg = read_volume(CT_SEG)
    bad = save_nifti(seg.array[:, :, :20], seg.affine, tmp_path / "seg_cut.nii.gz")
    with pytest.raises(ScanError) as e:
        preprocess_case(ct_case(label=str(bad)), small_config(), tmp_path)
    assert e.value.path == str(bad) and CT.name in e.value.problem
    assert not (tmp_path / "cases").exists() or not any((tmp_path / "cases").iterdir())


def test_nan_image_is_an_error(tmp_path):
    src = read_volume(CT)
    arr = src.array.astype(np.float32)
    arr[10, 10, 10] = np.nan
    bad = save_nifti(arr, src.affine, tmp_path / "nan.nii.gz")
    with pytest.raises(ScanError, match="NaN"):
        preprocess_case(Case("nan", [str(bad)], "CT"), small_config(), tmp_path)

