"""DICOM series: the real JPEG-2000 and 3-slice series, several series in a folder, and
incomplete or inconsistent series (clear ScanError naming the folder)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ingest_helpers import DICOM, IDENTITY_STRINGS, J2K, THREE, copy_series
from medmae.io import ScanError, read_volume
from medmae.io.dicom import find_series, read_series
from medmae.io.geometry import align_to, orientation, resample_to
from medmae.io.paths import series_path

LIVER = 5  # TotalSegmentator 'total' id


@pytest.fixture(scope="module")
def j2k():
    return read_volume(J2K)


def test_j2k_series_is_jpeg2000_with_blank_uids():
    """Guard the premise: the files really are JPEG-2000 and lack series/SOP class UIDs."""
    ds = pydicom.dcmread(sorted(J2K.iterdir())[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert not ds.SeriesInstanceUID and not ds.SOPClassUID


def test_j2k_series_reads(j2k):
    assert j2k.shape == (512, 512, 20)
    assert np.allclose(j2k.spacing, (0.9765625, 0.9765625, 2.0))
    assert orientation(j2k) == "LPS"
    assert j2k.array.dtype == np.int16  # uint16 stored + intercept -1024 -> int16 HU
    assert int(j2k.array.min()) == -1024 and 1000 < int(j2k.array.max()) < 3000
    # RAS origin: DICOM LPS (-249.51, -437.51, -804.5) of the lowest slice, x and y negated
    assert np.allclose(j2k.affine[:3, 3], [249.51171875, 437.51171875, -804.5])
    assert j2k.meta == {"modality": "CT", "slices": 20, "series_key": j2k.meta["series_key"], "series_index": 0}


def test_j2k_series_matches_gdcm(j2k):
    """An independent decoder (SimpleITK/GDCM) gives the same voxels and geometry."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(J2K)))
    img = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), j2k.array)
    assert np.allclose(np.array(img.GetOrigin()) * [-1, -1, 1], j2k.affine[:3, 3])


def test_j2k_label_overlays_liver(j2k):
    """The label map is stored LAS over the LPS series: exact reorientation puts the liver on liver HU."""
    seg = read_volume(DICOM / "ct_abdomen_j2k_series_seg.nii.gz")
    assert orientation(seg) == "LAS"
    aligned = align_to(j2k, seg)
    assert np.array_equal(aligned.array, resample_to(seg, j2k).array)
    assert np.array_equal(aligned.array, seg.array[:, ::-1, :])
    liver = aligned.array == LIVER
    assert liver.sum() > 100_000
    hu = j2k.array[liver]
    assert 30 <= float(np.median(hu)) <= 110
    assert np.mean((hu >= 30) & (hu <= 150)) > 0.95  # nearly all of it soft tissue
    # the same mask misplaced (array taken as if on the series grid) reaches air and fat
    misplaced = j2k.array[seg.array == LIVER]
    assert np.mean((misplaced >= 30) & (misplaced <= 150)) < 0.75 and np.percentile(misplaced, 10) < -500


def test_three_slice_series_reads():
    vol = read_volume(THREE)
    assert vol.shape == (512, 512, 3)
    assert np.allclose(vol.spacing, (0.810547, 0.810547, 1.0), atol=1e-6)
    assert orientation(vol) == "LPS"
    assert vol.array.dtype == np.int16 and int(vol.array.min()) == -3024  # padding -2000 raw - 1024
    assert np.allclose(vol.affine[:3, 3], [235.199997, 226.800003, -128.690002], atol=1e-5)


def test_meta_holds_no_identity(j2k):
    vol = read_volume(THREE)
    text = repr(j2k.meta) + repr(vol.meta)
    assert not any(s in text for s in IDENTITY_STRINGS)
    assert set(vol.meta) <= {"modality", "slices", "series_key", "series_index", "sequence", "scanning_sequence"}


def test_folder_with_two_series(tmp_path):
    mixed = copy_series(J2K, tmp_path / "mixed")
    copy_series(THREE, mixed)
    found = find_series(mixed)
    assert sorted(len(s.files) for s in found) == [3, 20]
    with pytest.raises(ScanError) as e:
        read_volume(mixed)
    assert e.value.path == str(mixed) and "2 DICOM series" in e.value.problem
    assert all(s.key in e.value.problem for s in found)
    assert not any(s in str(e.value) for s in IDENTITY_STRINGS)
    shapes = {read_volume(mixed, series=s.index).shape for s in found}
    assert shapes == {(512, 512, 3), (512, 512, 20)}
    three = next(s for s in found if len(s.files) == 3)
    assert read_volume(series_path(mixed, three.key)).shape == (512, 512, 3)
    with pytest.raises(ScanError, match="no series 'zzz'"):
        read_volume(mixed, series="zzz")


def test_blank_uid_series_split_by_number_and_geometry(tmp_path):
    """Two copies of the UID-less series, the second renumbered and moved 100 mm: two series."""
    folder = copy_series(J2K, tmp_path / "two")
    for f in sorted(J2K.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SeriesNumber = 7
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [ds.ImagePositionPatient[2] + 100]
        ds.save_as(folder / f"b_{f.name}")
    found = find_series(folder)
    assert [len(s.files) for s in found] == [20, 20]
    # ordered by SeriesNumber: the renumbered copy (7) first, the original (none) last
    assert read_series(folder, series=0).affine[2, 3] == pytest.approx(-704.5)
    assert read_series(folder, series=1).affine[2, 3] == pytest.approx(-804.5)


def _slice_at(folder, index_in_order):
    files = sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    return files[index_in_order]


def test_missing_middle_slice(tmp_path):
    folder = copy_series(J2K, tmp_path / "gap")
    _slice_at(folder, 10).unlink()
    with pytest.raises(ScanError) as e:
        read_volume(folder)
    assert e.value.path == str(folder)
    assert "incomplete series" in e.value.problem and "missing" in e.value.problem
    assert "gap of 4.0 mm" in e.value.problem and "expected 2.0 mm" in e.value.problem
    assert "1 slice(s) missing" in e.value.problem


def test_two_adjacent_slices_missing(tmp_path):
    folder = copy_series(J2K, tmp_path / "gap2")
    for f in [_slice_at(folder, 8), _slice_at(folder, 9)]:
        f.unlink()
    with pytest.raises(ScanError, match=r"gap of 6\.0 mm .*2 slice\(s\) missing"):
        read_volume(folder)


def test_duplicated_slice(tmp_path):
    folder = copy_series(J2K, tmp_path / "dup")
    src = _slice_at(folder, 5)
    (folder / "copy_of_slice").write_bytes(src.read_bytes())
    with pytest.raises(ScanError) as e:
        read_volume(folder)
    assert e.value.path == str(folder) and "duplicated slice position" in e.value.problem


def test_uneven_spacing(tmp_path):
    folder = copy_series(J2K, tmp_path / "uneven")
    f = _slice_at(folder, 7)
    ds = pydicom.dcmread(f)
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [ds.ImagePositionPatient[2] + 0.7]
    ds.save_as(f)
    with pytest.raises(ScanError, match="uneven slice spacing"):
        read_volume(folder)


def test_inconsistent_rows_and_columns(tmp_path):
    folder = copy_series(THREE, tmp_path / "sizes")
    f = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(f)
    small = np.ascontiguousarray(ds.pixel_array[::2, ::2])
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.save_as(f)
    with pytest.raises(ScanError) as e:
        read_volume(folder)
    assert e.value.path == str(folder) and "256x256, 512x512" in e.value.problem


def test_undecodable_pixels(tmp_path):
    folder = copy_series(J2K, tmp_path / "broken")
    f = _slice_at(folder, 3)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 20000])
    with pytest.raises(ScanError) as e:
        read_volume(folder)
    assert e.value.path == str(folder) and "cannot decode" in e.value.problem


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ScanError, match="no DICOM image files"):
        read_volume(tmp_path)


def test_single_image_slice_file_is_refused():
    with pytest.raises(ScanError, match="pass the folder of its series"):
        read_volume(THREE / "01.dcm")


def test_mr_sequence_keyword_without_free_text(tmp_path):
    folder = copy_series(THREE, tmp_path / "mr")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.SeriesDescription = "AX T2 FLAIR JANCT000 research"
        ds.ScanningSequence = ["SE", "IR"]
        ds.save_as(f)
    vol = read_volume(folder)
    assert vol.meta["modality"] == "MR" and vol.meta["sequence"] == "flair"
    assert vol.meta["scanning_sequence"] == "SE\\IR"
    assert "JANCT000" not in repr(vol.meta) and "research" not in repr(vol.meta)
