"""DICOM SEG: the liver segment lands on the liver of the 3-slice CT series."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from ingest_helpers import DICOM, THREE
from medmae.io import ScanError, read_volume
from medmae.io.dicom_seg import read_dicom_seg
from medmae.io.geometry import resample_to, same_geometry

SEG = DICOM / "ct_3slice_liver_SEG.dcm"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_seg_reads_in_world_space():
    seg = read_dicom_seg(SEG)
    assert seg.shape == (512, 512, 3) and seg.array.dtype == np.uint8
    assert seg.meta == {"modality": "SEG", "segments": {1: "Liver"}}
    assert set(np.unique(seg.array)) == {0, 1}
    # frames at z = -128.69, -127.69, -126.69 (LPS == RAS along z), 0.8105 mm pixels
    assert np.allclose(seg.affine[:3, 3], [235.2, 226.8, -128.69])
    assert np.allclose(seg.spacing, (0.810547, 0.810547, 1.0))


def test_seg_matches_reference_label_and_liver_hu():
    ct = read_volume(THREE)
    seg = read_volume(SEG)  # read_volume dispatches a .dcm SEG to read_dicom_seg
    ref = read_volume(DICOM / "ct_3slice_liver_seg.nrrd")
    on_ct = resample_to(seg, ct).array > 0
    ref_on_ct = resample_to(ref, ct).array > 0
    assert on_ct.sum() > 100_000
    assert dice(on_ct, ref_on_ct) > 0.95
    assert 30 <= float(np.median(ct.array[on_ct])) <= 110
    # the check can fail: the mask shifted 100 voxels to the side is not on liver
    assert not 30 <= float(np.median(ct.array[np.roll(on_ct, 100, axis=0)])) <= 110


def test_seg_grid_equals_ct_grid():
    assert same_geometry(read_dicom_seg(SEG), read_volume(THREE))


def test_seg_with_missing_frame_keeps_positions(tmp_path):
    """A SEG that omits its middle (empty) plane still puts the other frames at their z."""
    ds = pydicom.dcmread(SEG)
    px = ds.pixel_array[[0, 2]]
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in (0, 2)])
    ds.NumberOfFrames = 2
    ds.PixelData = pydicom.pixels.pack_bits(px)
    ds.save_as(tmp_path / "two_frames.dcm")
    seg = read_dicom_seg(tmp_path / "two_frames.dcm")
    full = read_dicom_seg(SEG)
    assert seg.shape == (512, 512, 3)
    assert np.array_equal(seg.array[..., [0, 2]], full.array[..., [0, 2]]) and not seg.array[..., 1].any()


def test_non_seg_file_is_refused():
    with pytest.raises(ScanError, match="not a SEG"):
        read_dicom_seg(THREE / "01.dcm")
