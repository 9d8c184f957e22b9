"""DICOM faults on copies of real series (issue 6, item 3)."""

from __future__ import annotations

import errno
import os
import shutil

import pydicom
import pytest

import medmae.io.dicom as dicom_mod
from ingest_helpers import DATA, DICOM, J2K, THREE, copy_series
from medmae.io import ScanError, read_volume
from medmae.io.scan import scan_folder


def _refuse_open(monkeypatch, victim, error):
    real_open = open

    def guarded(file, *a, **k):
        if os.path.basename(str(file)) == victim:
            raise error
        return real_open(file, *a, **k)

    monkeypatch.setattr(dicom_mod, "open", guarded, raising=False)


@pytest.mark.parametrize("error,why", [(PermissionError(13, "Permission denied"), "permission denied"),
                                       (OSError(errno.EIO, "Input/output error"), "Input/output error")])
def test_unreadable_slice_makes_the_series_a_named_bad_case(tmp_path, monkeypatch, error, why):
    series = copy_series(THREE, tmp_path / "root/ct")
    shutil.copy(DATA / "spine_t2.nii.gz", tmp_path / "root/spine_t2.nii.gz")
    _refuse_open(monkeypatch, "02.dcm", error)
    with pytest.raises(ScanError) as e:  # never the series one slice short
        read_volume(series)
    assert e.value.path == str(series) and why in e.value.problem and "1 of the folder's 3 files" in e.value.problem
    cases, bad = scan_folder(tmp_path / "root", progress=False)
    assert [c.case_id for c in cases] == ["spine_t2"]  # the batch goes on
    assert bad == [(str(series), e.value.problem)]


def test_unreadable_pixels_of_a_slice_are_named(tmp_path, monkeypatch):
    series = copy_series(THREE, tmp_path / "ct")
    real = pydicom.dcmread

    def dcmread(path, *a, stop_before_pixels=False, **k):
        if not stop_before_pixels and str(path).endswith("03.dcm"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, stop_before_pixels=stop_before_pixels, **k)

    monkeypatch.setattr(dicom_mod.pydicom, "dcmread", dcmread)
    with pytest.raises(ScanError, match=r"cannot read slice \d of 3 \(permission denied\)"):
        read_volume(series)


def test_dicom_seg_pairs_with_its_series_by_reference(tmp_path):
    root = tmp_path / "root"
    copy_series(THREE, root / "study/series_a")
    shutil.copy(DICOM / "ct_3slice_liver_SEG.dcm", root / "study/liver.dcm")  # a name that says nothing
    shutil.copy(DICOM / "ct_3slice_liver_SEG.dcm", tmp_path / "lonely.dcm")
    cases, bad = scan_folder(root, progress=False)
    assert bad == [] and len(cases) == 1 and cases[0].label == str(root / "study/liver.dcm")
    seg, image = read_volume(cases[0].label), read_volume(cases[0].image[0])
    assert seg.shape == image.shape and int(seg.array.sum()) > 1000  # the liver, on the series' grid
    (tmp_path / "alone").mkdir()
    shutil.move(tmp_path / "lonely.dcm", tmp_path / "alone/lonely.dcm")
    cases, bad = scan_folder(tmp_path / "alone", progress=False)
    assert cases == [] and "unpaired label map (DICOM SEG)" in bad[0][1] and bad[0][0].endswith("lonely.dcm")


def test_symlinked_folders_followed_loops_and_unlistable_folders_reported(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere/spine"
    outside.mkdir(parents=True)
    shutil.copy(DATA / "spine_t2.nii.gz", outside / "spine_t2.nii.gz")
    root = tmp_path / "root"
    (root / "a/locked").mkdir(parents=True)
    shutil.copy(DATA / "brain1_t1c.nrrd", root / "a/locked/brain1_t1c.nrrd")
    os.symlink(outside, root / "linked")
    os.symlink(root / "a", root / "a/loop")  # a -> a -> a ...
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    cases, bad = scan_folder(root, progress=False)
    assert [c.case_id for c in cases] == ["linked__spine_t2"]
    problems = dict(bad)
    assert "symlink loop" in problems[str(root / "a/loop")]
    assert "cannot list this folder (permission denied)" in problems[str(root / "a/locked")]


def test_stray_slices_reported_against_their_series_key(tmp_path):
    mixed = copy_series(J2K, tmp_path / "root/mixed")
    shutil.copy(THREE / "02.dcm", mixed / "zz_stray.dcm")  # one slice of another series
    cases, bad = scan_folder(tmp_path / "root", progress=False)
    assert len(cases) == 1 and cases[0].image[0].startswith(f"{mixed}#")  # the 20-slice series goes on
    (path, problem), = bad
    assert path.startswith(f"{mixed}#") and "stray slice" in problem and path.rsplit("#", 1)[1] in problem
    # a slice of the series itself with another orientation (a localizer left in)
    odd = copy_series(THREE, tmp_path / "odd")
    ds = pydicom.dcmread(odd / "02.dcm")
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(odd / "02.dcm")
    with pytest.raises(ScanError, match=r"1 stray slice\(s\) \(file\(s\) 2 of 3 in name order\)"):
        read_volume(odd)


def test_unreadable_extra_file_in_a_series_folder_is_reported_not_raised(tmp_path, monkeypatch):
    """The sha256 covers every file of a DICOM folder: one it cannot read is a named bad case."""
    import medmae.io.manifest as manifest_mod

    series = copy_series(THREE, tmp_path / "root/ct")
    (series / "notes.txt").write_text("acquisition notes")
    shutil.copy(DATA / "spine_t2.nii.gz", tmp_path / "root/spine_t2.nii.gz")
    real_open = open

    def guarded(file, *a, **k):
        if str(file).endswith("notes.txt"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(manifest_mod, "open", guarded, raising=False)
    cases, bad = scan_folder(tmp_path / "root", progress=False)
    assert [c.case_id for c in cases] == ["spine_t2"]
    assert bad == [(str(series / "notes.txt"), "cannot read (permission denied)")]


def test_unlistable_series_folder_read_directly_says_permission(tmp_path, monkeypatch):
    from pathlib import Path

    series = copy_series(THREE, tmp_path / "ct")
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == series:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(ScanError, match=r"cannot list this folder \(permission denied\)") as e:
        read_volume(series)
    assert e.value.path == str(series)


def tilted(src, dst, degrees: float):
    """A copy of a series whose slice positions step ``degrees`` off the slice normal (gantry tilt)."""
    import math

    copy_series(src, dst)
    for f in dst.iterdir():
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + z * math.tan(math.radians(degrees)), z]
        ds.save_as(f)
    return dst


def test_gantry_tilt_warns_naming_the_tilt(tmp_path, caplog):
    """Issue 19, item 10: a tilted series is read (its sheared affine is right) with a warning."""
    vol = read_volume(tilted(THREE, tmp_path / "tilt", 12.0))
    assert vol.meta["gantry_tilt_deg"] == pytest.approx(12.0, abs=0.01)
    assert "gantry tilt of 12.0 degrees" in caplog.text and str(tmp_path / "tilt") in caplog.text
    caplog.clear()
    assert "gantry_tilt_deg" not in read_volume(THREE).meta and "gantry tilt" not in caplog.text
