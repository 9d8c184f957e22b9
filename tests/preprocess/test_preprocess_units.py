"""Building blocks on known inputs: windows, resampling, body mask, priors, fingerprint, config hash."""

from __future__ import annotations

import numpy as np
import pytest

from medmae.preprocess.body import body_mask, ellipsoid
from medmae.preprocess.config import BodyMaskConfig, CTIntensity, MRIntensity, PreprocessConfig, config_hash
from medmae.preprocess.fingerprint import build_fingerprint, intensity_stats
from medmae.preprocess.intensity import ct_window, mr_zscore
from medmae.preprocess.priors import supervoxels, tissue_classes
from medmae.preprocess.spatial import crop_window, resample_to_grid, shift_affine, take_window, to_ras_spacing
from medmae.config.base import ConfigError, load_config


def test_crop_window_adds_margin_and_pads_to_min_shape():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:10, 6:8, 10:11] = True
    start, stop = crop_window(mask, margin=(2, 2, 2), min_shape=(8, 8, 8))
    np.testing.assert_array_equal(start, [3, 3, 7])  # y: 4..10 (6 wide) grown to 8; z: 8..13 grown to 8
    np.testing.assert_array_equal(stop - start, [9, 8, 8])
    mask[:] = False
    mask[0, 0, 0] = True
    start, stop = crop_window(mask, margin=(1, 1, 1), min_shape=(4, 4, 4))
    np.testing.assert_array_equal(start, [-1, -1, -1])
    np.testing.assert_array_equal(stop, [3, 3, 3])


def test_take_window_pads_with_fill_and_keeps_leading_axes():
    a = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    out = take_window(a, np.array([-1, 1, 0]), np.array([3, 5, 4]), fill=-7)
    assert out.shape == (2, 4, 4, 4)
    np.testing.assert_array_equal(out[:, 1:, :3], a[:, :3, 1:])
    assert (out[:, 0] == -7).all() and (out[:, :, 3] == -7).all()


def test_shift_affine_moves_origin_to_start_voxel():
    aff = np.array([[0, 0, 2.0, 10], [-1.5, 0, 0, 20], [0, 3.0, 0, 30], [0, 0, 0, 1]])
    out = shift_affine(aff, np.array([1, -2, 3]))
    np.testing.assert_allclose(out @ [0, 0, 0, 1], aff @ [1, -2, 3, 1])
    np.testing.assert_allclose(out[:3, :3], aff[:3, :3])


def test_to_ras_spacing_flips_lps_and_resamples():
    arr = np.random.default_rng(0).random((1, 10, 12, 8)).astype(np.float32)
    lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    out, aff = to_ras_spacing(arr, lps, (1.0, 1.0, 1.0))
    assert out.shape == (1, 19, 23, 15) and out.dtype == np.float32  # same span of voxel centres
    np.testing.assert_allclose(np.diag(aff)[:3], [1, 1, 1])
    # the world point of source voxel (9, 11, 0) (the RAS-most corner) maps to the same value
    world = lps @ [9, 11, 0, 1]
    vox = np.rint(np.linalg.inv(aff) @ world).astype(int)[:3]
    assert abs(out[0][tuple(vox)] - arr[0, 9, 11, 0]) < 0.35  # linear interpolation near a voxel centre


def test_resample_to_grid_nearest_keeps_labels_and_shifts_by_world():
    labels = np.zeros((6, 6, 6), np.float32)
    labels[2, 3, 4] = 7
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    dst = shift_affine(aff, np.array([1, 1, 1]))
    out = resample_to_grid(labels, aff, dst, (6, 6, 6), order=0, fill=-1)
    assert out[1, 2, 3] == 7 and set(np.unique(out)) == {-1, 0, 7}
    assert (out[5] == -1).all()  # beyond the source grid
    with pytest.raises(ValueError):
        resample_to_grid(labels, aff, dst, (6, 6, 6), order=3)


def test_ct_window_and_mr_zscore():
    hu = np.array([-2000, -1000, 0, 1000, 3000], np.float32).reshape(5, 1, 1)
    out, p = ct_window(hu, CTIntensity(window=(-1000, 1000)))
    np.testing.assert_allclose(out.ravel(), [0, 0, 0.5, 1, 1])
    rng = np.random.default_rng(1)
    mr = rng.normal(300, 40, (20, 20, 20)).astype(np.float32)
    body = np.zeros(mr.shape, bool)
    body[5:15] = True
    mr[~body] = 0
    z, p = mr_zscore(mr, body, MRIntensity(percentiles=(1, 99)))
    assert abs(z[body].mean()) < 1e-4 and abs(z[body].std() - 1) < 1e-4
    assert p["floor"] == pytest.approx(z.min(), abs=1e-5)
    with pytest.raises(ValueError, match="constant"):
        mr_zscore(np.ones_like(mr), body, MRIntensity())


def test_body_mask_fills_holes_and_drops_specks():
    img = np.full((1, 30, 30, 20), -1000.0, np.float32)
    img[0, 5:25, 5:25, :] = 40.0       # a body cylinder-ish block through all slices
    img[0, 10:15, 10:15, :] = -900.0   # an air cavity open at both ends (lungs)
    img[0, 1, 1, 1] = 500.0             # a speck (cable)
    mask = body_mask(img, "CT", (2.0, 2.0, 2.0), BodyMaskConfig())
    assert mask[12, 12, 0] and mask[12, 12, 10]  # filled
    assert not mask[1, 1, 1]
    assert mask.sum() == 20 * 20 * 20


def test_ellipsoid_respects_anisotropic_spacing():
    ball = ellipsoid(6.0, (1.5, 1.5, 3.0))
    assert ball.shape == (9, 9, 5) and ball[4, 4, 2]


def test_tissue_classes_split_three_levels():
    img = np.zeros((12, 12, 12), np.float32)
    img[:, :4], img[:, 4:8], img[:, 8:] = 1.0, 2.0, 3.0
    body = np.ones(img.shape, bool)
    body[0] = False
    t, thr = tissue_classes(img, body, 3)
    assert t[1, 0, 0] == 1 and t[1, 5, 0] == 2 and t[1, 9, 0] == 3 and not t[0].any()
    assert len(thr) == 2
    with pytest.raises(ValueError, match="tissue classes"):
        tissue_classes(np.ones_like(img), body, 3)


@pytest.mark.parametrize("downsample", [1, 2])
def test_supervoxels_count_and_mask(downsample):
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.1, (1, 40, 40, 40)).astype(np.float32)
    body = np.zeros((40, 40, 40), bool)
    body[4:36, 4:36, 4:36] = True
    sv = supervoxels(img, body, 27, compactness=0.1, downsample=downsample)
    n = sv.max()
    assert 27 / 2 <= n <= 27 * 2 and set(np.unique(sv[body])) == set(range(1, n + 1))
    assert not sv[~body].any()
    assert not supervoxels(img, body, 0, 0.1).any()


def test_fingerprint_pools_exactly():
    rng = np.random.default_rng(2)
    a, b = rng.normal(10, 2, (1, 10, 10, 10)), rng.normal(20, 5, (1, 8, 8, 8))
    ones_a, ones_b = np.ones(a.shape[1:], bool), np.ones(b.shape[1:], bool)
    summaries = [
        {"modality": "MR", "source_spacing": [1, 1, 2], "source_shape": [10, 10, 10], "intensity": intensity_stats(a, ones_a)},
        {"modality": "MR", "source_spacing": [1, 1, 4], "source_shape": [8, 8, 8], "intensity": intensity_stats(b, ones_b)},
    ]
    fp = build_fingerprint(summaries)["MR"]
    both = np.concatenate([a.ravel(), b.ravel()])
    assert fp["cases"] == 2 and fp["intensity"][0]["voxels"] == both.size
    assert fp["intensity"][0]["mean"] == pytest.approx(both.mean())
    assert fp["intensity"][0]["std"] == pytest.approx(both.std())
    assert fp["source_spacing"]["median"] == [1, 1, 3] and fp["source_shape"]["max"] == [10, 10, 10]


def test_config_hash_ignores_workers_and_validation(tmp_path):
    a = PreprocessConfig()
    assert config_hash(a) == config_hash(PreprocessConfig(workers=7))
    assert config_hash(a) != config_hash(PreprocessConfig(spacing=(2, 2, 2)))
    bad = tmp_path / "p.yaml"
    bad.write_text("ct:\n  window: [100, -100]\n")
    with pytest.raises(ConfigError, match="window"):
        load_config(PreprocessConfig, bad)
