"""Grid comparison, label-geometry checks and world-coordinate resampling."""

from __future__ import annotations

import numpy as np
import pytest

from ingest_helpers import DATA, save_nifti
from medmae.io import ScanError, Volume, read_volume
from medmae.io.geometry import align_to, check_same_grid, resample_to, same_geometry, same_grid


def vol(array, affine, name="v.nii.gz"):
    return Volume(array=np.asarray(array), affine=np.asarray(affine, float), path=DATA / name)


def test_real_labels_share_their_image_grid():
    for image, label in [("ct_abdomen_3mm.nii.gz", "ct_abdomen_3mm_seg.nii.gz"),
                         ("mr_abdomen_3mm.nii.gz", "mr_abdomen_3mm_seg.nii.gz"),
                         ("brain1_t1c.nrrd", "brain1_tumour.nrrd"),
                         ("spine_t2.nii.gz", "spine_t2_cordseg.nii.gz")]:
        a, b = read_volume(DATA / image), read_volume(DATA / label)
        assert same_geometry(a, b) and same_grid(a, b)
        assert align_to(a, b) is b


def test_same_geometry_tolerance_is_in_mm():
    a = vol(np.zeros((10, 10, 10)), np.diag([2.0, 2.0, 2.0, 1.0]))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[0, 3] = 0.005
    assert same_geometry(a, vol(np.zeros((10, 10, 10)), shifted))  # 0.005 mm < 0.01 mm
    shifted[0, 3] = 0.5
    assert not same_geometry(a, vol(np.zeros((10, 10, 10)), shifted))
    assert not same_geometry(a, vol(np.zeros((10, 10, 9)), np.diag([2.0, 2.0, 2.0, 1.0])))


def test_flipped_and_permuted_grid_is_aligned_exactly():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 7, 8)).astype(np.uint8)
    image = vol(np.zeros((6, 7, 8), np.int16), np.diag([1.0, 2.0, 3.0, 1.0]), "img.nii.gz")
    # the same voxels stored with axes (k, i, j) and i flipped
    stored = labels[::-1].transpose(2, 0, 1)
    aff = np.zeros((4, 4))
    aff[2, 0], aff[0, 1], aff[1, 2], aff[3, 3] = 3.0, -1.0, 2.0, 1.0
    aff[0, 3] = 5.0
    other = vol(stored, aff, "lab.nii.gz")
    assert not same_geometry(image, other) and same_grid(image, other)
    aligned = align_to(image, other)
    assert aligned.array.dtype == np.uint8 and np.array_equal(aligned.array, labels)


def test_mismatched_label_names_both_files(tmp_path):
    ct = read_volume(DATA / "ct_abdomen_3mm.nii.gz")
    seg = read_volume(DATA / "ct_abdomen_3mm_seg.nii.gz")
    moved = seg.affine.copy()
    moved[:3, 3] += [4.5, 0, 0]
    bad = read_volume(save_nifti(tmp_path / "moved_seg.nii.gz", seg.array, moved))
    with pytest.raises(ScanError) as e:
        check_same_grid(ct, bad)
    assert e.value.path.endswith("moved_seg.nii.gz") and "ct_abdomen_3mm.nii.gz" in e.value.problem
    assert "4.5 mm" in e.value.problem
    cropped = read_volume(save_nifti(tmp_path / "crop_seg.nii.gz", seg.array[:, :, :20], seg.affine))
    with pytest.raises(ScanError, match=r"shape \(122, 101, 20\) differs from the image's \(122, 101, 30\)"):
        align_to(ct, cropped)


def test_resample_linear_matches_analytic_ramp():
    """A ramp sampled at half-voxel offsets by world position gives the midpoint values."""
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None], (10, 4, 4)).copy()
    src = vol(ramp, np.diag([2.0, 1.0, 1.0, 1.0]))
    tgt_aff = np.diag([2.0, 1.0, 1.0, 1.0])
    tgt_aff[0, 3] = 1.0  # one mm = half a source voxel along x
    out = resample_to(src, vol(np.zeros((9, 4, 4)), tgt_aff), order=1)
    assert out.array.dtype == np.float32
    assert np.allclose(out.array[:, 1, 1], np.arange(9) + 0.5)
