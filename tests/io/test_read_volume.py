"""read_volume on the real scans (geometry, dtype) and on broken files (clear ScanError)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ingest_helpers import DATA, save_nifti
from medmae.io import ScanError, read_volume
from medmae.io.geometry import orientation
from medmae.io.image_file import itk_affine
from medmae.io.scaling import rescale

REAL = [  # file, shape, spacing, orientation, dtype, (min, max)
    ("ct_abdomen_3mm.nii.gz", (122, 101, 30), (3.0, 3.0, 3.0), "RAS", np.int16, (-1100, 1207)),
    ("ct_abdomen_3mm_seg.nii.gz", (122, 101, 30), (3.0, 3.0, 3.0), "RAS", np.uint8, (0, 117)),
    ("mr_abdomen_3mm.nii.gz", (117, 91, 20), (3.0, 3.0, 3.0), "LPS", np.int16, (-47, 833)),
    ("brain1_t1c.nrrd", (256, 256, 25), (0.78125, 0.78125, 6.5), "LAS", np.int16, (0, 3057)),
    ("brain1_tumour.nrrd", (256, 256, 25), (0.78125, 0.78125, 6.5), "LAS", np.int32, (0, 1)),
    ("spine_t2.nii.gz", (60, 55, 52), (1.0, 1.0, 1.0), "PSR", np.int16, (0, 1257)),
    ("spine_t2_cordseg.nii.gz", (60, 55, 52), (1.0, 1.0, 1.0), "PSR", np.uint8, (0, 1)),
]


@pytest.mark.parametrize("name,shape,spacing,orient,dtype,value_range", REAL, ids=[r[0] for r in REAL])
def test_real_scan_geometry(name, shape, spacing, orient, dtype, value_range):
    vol = read_volume(DATA / name)
    assert vol.shape == shape
    assert np.allclose(vol.spacing, spacing, atol=1e-5)
    assert orientation(vol) == orient
    assert vol.array.dtype == dtype
    assert (int(vol.array.min()), int(vol.array.max())) == value_range


def test_nrrd_lps_converted_to_ras():
    """brain1 NRRD: LPS origin (-99.6, 99.6, -78), direction diag(1,-1,1) -> RAS (99.6, -99.6, -78)."""
    vol = read_volume(DATA / "brain1_t1c.nrrd")
    assert np.allclose(vol.affine[:3, 3], [99.609375, -99.609375, -78.0], atol=1e-4)
    assert np.allclose(np.diag(vol.affine)[:3], [-0.78125, 0.78125, 6.5], atol=1e-5)


def test_nifti_affine_matches_simpleitk_after_lps_conversion():
    """Same file through nibabel (RAS) and SimpleITK (LPS, converted): identical affines."""
    for name in ("mr_abdomen_3mm.nii.gz", "spine_t2.nii.gz"):
        assert np.allclose(read_volume(DATA / name).affine, itk_affine(sitk.ReadImage(str(DATA / name))), atol=1e-6)


def test_mha_roundtrip_keeps_geometry(tmp_path):
    vol = read_volume(DATA / "spine_t2.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(DATA / "spine_t2.nii.gz")), str(tmp_path / "spine.mha"))
    mha = read_volume(tmp_path / "spine.mha")
    assert np.array_equal(mha.array, vol.array) and np.allclose(mha.affine, vol.affine, atol=1e-5)


def test_rescale_keeps_integers_and_floats_fractions():
    raw = np.array([0, 100, 2000], dtype=np.uint16)
    assert rescale(raw, 1.0, -1024).dtype == np.int16
    assert rescale(raw, 1.0, -1024).tolist() == [-1024, -924, 976]
    assert rescale(raw, 20, 0).dtype == np.int32  # 40000 does not fit int16
    out = rescale(raw, 0.5, 0.25)
    assert out.dtype == np.float32 and out.tolist() == [0.25, 50.25, 1000.25]
    assert rescale(raw, None, None) is raw


def test_nifti_scl_slope_fraction_gives_float32(tmp_path):
    img = nib.Nifti1Image(np.arange(27, dtype=np.int16).reshape(3, 3, 3), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    vol = read_volume(tmp_path / "scaled.nii.gz")
    assert vol.array.dtype == np.float32 and vol.array[2, 2, 2] == pytest.approx(26 * 0.5 + 10)


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    vol = read_volume(save_nifti(tmp_path / "t.nii.gz", np.ones((4, 5, 6, 1), np.int16)))
    assert vol.shape == (4, 5, 6)


def _expect(path, *words):
    with pytest.raises(ScanError) as e:
        read_volume(path)
    assert e.value.path.endswith(path.name)
    assert path.name in str(e.value)
    for w in words:
        assert w in e.value.problem, e.value.problem
    return e.value


def test_truncated_nifti(tmp_path):
    data = (DATA / "spine_t2.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "cut.nii.gz", "truncated")


def test_truncated_uncompressed_nifti(tmp_path):
    data = gzip.decompress((DATA / "spine_t2.nii.gz").read_bytes())
    (tmp_path / "cut.nii").write_bytes(data[: len(data) - 1000])
    _expect(tmp_path / "cut.nii")


def test_corrupt_gzip_stream(tmp_path):
    data = bytearray((DATA / "spine_t2.nii.gz").read_bytes())
    data[5000:5400] = bytes(400)
    (tmp_path / "corrupt.nii.gz").write_bytes(bytes(data))
    _expect(tmp_path / "corrupt.nii.gz")


def test_text_file_named_nifti(tmp_path):
    (tmp_path / "notes.nii.gz").write_text("this is not an image\n")
    _expect(tmp_path / "notes.nii.gz", "not a readable NIfTI")


def test_text_file_named_nrrd(tmp_path):
    (tmp_path / "notes.nrrd").write_text("this is not an image\n")
    _expect(tmp_path / "notes.nrrd", "not a readable image")


def test_truncated_nrrd(tmp_path):
    data = (DATA / "brain1_t1c.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) // 3])
    _expect(tmp_path / "cut.nrrd")


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _expect(tmp_path / "empty.nii.gz", "empty")


def test_4d_nifti(tmp_path):
    _expect(save_nifti(tmp_path / "fmri.nii.gz", np.zeros((4, 4, 4, 3), np.float32)), "4D", "3D volume is expected")


def test_2d_image(tmp_path):
    _expect(save_nifti(tmp_path / "slice.nii.gz", np.zeros((16, 16), np.int16)), "2D")
    _expect(save_nifti(tmp_path / "slab.nii.gz", np.zeros((16, 16, 1), np.int16)), "2D")
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkInt16), str(tmp_path / "photo.nrrd"))
    _expect(tmp_path / "photo.nrrd", "2D")


def test_nan_and_inf_voxels(tmp_path):
    a = np.zeros((4, 4, 4), np.float32)
    a[1, 2, 3] = np.nan
    a[0, 0, 0] = np.inf
    err = _expect(save_nifti(tmp_path / "nan.nii.gz", a), "non-finite")
    assert "2 " in err.problem


def test_zero_size(tmp_path):
    _expect(save_nifti(tmp_path / "zero.nii.gz", np.zeros((4, 0, 4), np.int16)), "zero-size")


def test_unsupported_extension_and_missing_file(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    _expect(tmp_path / "scan.png", "unsupported file type")
    _expect(tmp_path / "absent.nii.gz", "no such file")


def test_rgb_image(tmp_path):
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkVectorUInt8, 3), str(tmp_path / "rgb.nrrd"))
    _expect(tmp_path / "rgb.nrrd", "3-component")
