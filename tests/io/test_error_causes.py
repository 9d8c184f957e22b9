"""Errors that name the real cause (issue 6, item 5), on copies of real scans."""

from __future__ import annotations

import logging
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

import medmae.io.image_file as image_file_mod
from ingest_helpers import DATA, save_nifti
from medmae.io import ScanError, read_volume
from medmae.io.image_file import captured_stderr
from medmae.io.sanity import check_intensities
from medmae.io.scan import scan_folder

SPINE = DATA / "spine_t2.nii.gz"


def _problem(path) -> str:
    with pytest.raises(ScanError) as e:
        read_volume(path)
    assert e.value.path == str(path)
    return e.value.problem


def test_gzip_crc_failure_is_corrupt_not_uncompressed(tmp_path):
    data = bytearray(SPINE.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(data))
    problem = _problem(bad)
    assert "corrupt" in problem and "CRC" in problem and "not gzip" not in problem
    plain = tmp_path / "plain.nii.gz"
    plain.write_bytes(nib.load(SPINE).to_bytes())  # an uncompressed NIfTI named .gz
    assert "not gzip-compressed" in _problem(plain)


def test_permission_error_says_permission(tmp_path, monkeypatch):
    # sessions run as root, where chmod 000 does not stop reads: make open() refuse instead
    target = shutil.copy(SPINE, tmp_path / "locked.nii.gz")
    nrrd = shutil.copy(DATA / "brain1_t1c.nrrd", tmp_path / "locked.nrrd")
    real_open = open

    def guarded(file, *a, **k):
        if str(file) in (str(target), str(nrrd)):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(image_file_mod, "open", guarded, raising=False)
    for path in (target, nrrd):
        problem = _problem(path)
        assert problem.startswith("permission denied") and "corrupt" not in problem


def test_symlink_loop_says_loop(tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    os.symlink(b, a)
    os.symlink(a, b)
    assert "symlink loop" in _problem(a)
    dangling = tmp_path / "gone.nii.gz"
    os.symlink(tmp_path / "nowhere.nii.gz", dangling)
    assert "dangling symlink" in _problem(dangling)


def test_itk_reason_is_whole_and_stderr_is_captured(tmp_path):
    data = (DATA / "brain1_t1c.nrrd").read_bytes()
    cut = tmp_path / "cut.nrrd"
    cut.write_bytes(data[: len(data) // 2])
    problem = _problem(cut)
    assert "Exception thrown" not in problem and ".cxx" not in problem
    assert "expected 3276800 bytes but received" in problem  # the last, decisive line survives
    with captured_stderr() as noise:
        os.write(2, b"WARNING: In itkSomething.cxx: noise from C++\n")
    assert noise.text == "WARNING: In itkSomething.cxx: noise from C++"


def test_nifti_without_qform_or_sform_is_read_with_a_warning(tmp_path, caplog):
    img = nib.load(SPINE)
    bare = nib.Nifti1Image(np.asanyarray(img.dataobj), None, img.header)
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    path = tmp_path / "bare.nii.gz"
    nib.save(bare, str(path))
    with caplog.at_level(logging.WARNING, logger="medmae.io.read"):
        vol = read_volume(path)
    assert vol.shape == (60, 55, 52) and vol.meta["orientation_unknown"]
    assert any("orientation unknown" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(vol.spacing, read_volume(SPINE).spacing, rtol=1e-5)


def test_absurd_intensities_are_named_at_scan_time(tmp_path):
    src = read_volume(SPINE)
    flt = src.array.astype(np.float32)
    flt[30, 30, 30] = 3.0e38  # near float32's limit
    spiky = src.array.astype(np.int16)
    spiky[10, 10, 10], spiky[40, 20, 30], spiky[5, 50, 2] = 32767, -32767, 32767
    (tmp_path / "in").mkdir()
    save_nifti(tmp_path / "in/overflow_t2.nii.gz", flt, src.affine)
    save_nifti(tmp_path / "in/spikes_t2.nii.gz", spiky, src.affine)
    shutil.copy(SPINE, tmp_path / "in/good_t2.nii.gz")
    cases, bad = scan_folder(tmp_path / "in", progress=False)
    assert [c.case_id for c in cases] == ["good_t2"]
    problems = dict(bad)
    assert "near the float limit" in problems[str(tmp_path / "in/overflow_t2.nii.gz")]
    assert "3 isolated voxel(s) at the int16 limit" in problems[str(tmp_path / "in/spikes_t2.nii.gz")]
    check_intensities(src)  # the real scan passes
    ct = read_volume(DATA / "ct_abdomen_3mm.nii.gz")
    check_intensities(ct)  # CT with air at -1000 HU passes
