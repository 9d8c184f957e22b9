"""Guards decided from the header before reading: bombs, absurd scaling and geometry, constant
images, data files outside their folder (issue 19, items 2, 9 and 10)."""

from __future__ import annotations

import os
import shutil
import time

import nibabel as nib
import numpy as np
import pytest

import medmae.io.header_checks as hc
from bombs import (gzip_overflow, mha_bomb, mhd_pointing, nhdr_pointing, nifti_bomb, nrrd_bomb, scaled_nifti,
                   varied, zero_pixdim)
from ingest_helpers import DATA, save_nifti
from medmae.cli.main import main
from medmae.io.errors import ScanError
from medmae.io.limits import MAX_IMAGE_ENV, OUTSIDE_DATA_ENV, default_max_image_mb
from medmae.io.read import read_volume


def _refused(path, *words):
    with pytest.raises(ScanError) as e:
        read_volume(path)
    assert e.value.path == str(path)
    for w in words:
        assert w in e.value.problem, e.value.problem
    return e.value.problem


@pytest.mark.parametrize("name, build", [("bomb.nii.gz", nifti_bomb), ("bomb.nii", nifti_bomb),
                                         ("bomb.nrrd", nrrd_bomb), ("bomb.mha", mha_bomb)])
def test_bombs_refused_from_the_header(tmp_path, name, build):
    path = build(tmp_path / name)
    assert path.stat().st_size < 4096
    t0 = time.perf_counter()
    problem = _refused(path, "header declares", "above the limit", "--max-image-mb", MAX_IMAGE_ENV)
    assert time.perf_counter() - t0 < 5  # nothing was read or decompressed
    assert "GiB" in problem


def test_gzip_stream_longer_than_its_header_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(hc, "GZIP_SLACK", 1024)
    _refused(gzip_overflow(tmp_path / "long.nii.gz"), "decompresses to more than", "decompression bomb")


def test_limit_is_configurable_and_named(tmp_path, monkeypatch, capsys):
    spine = DATA / "spine_t2.nii.gz"
    assert 0 < default_max_image_mb() <= 2048
    monkeypatch.setenv(MAX_IMAGE_ENV, "0.01")
    _refused(spine, "above the limit of 10.2 KiB")
    monkeypatch.delenv(MAX_IMAGE_ENV)
    assert read_volume(spine).array.size > 0
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(spine, root / "neck_t2.nii.gz")
    code = main(["data", "scan", str(root), "--out", str(tmp_path / "m.csv"), "--no-progress", "--max-image-mb", "0.01"])
    out = capsys.readouterr().out
    assert code == 2 and "above the limit of 10.2 KiB" in out and "--max-image-mb" in out
    monkeypatch.delenv(MAX_IMAGE_ENV, raising=False)


def test_constant_images_refused(tmp_path):
    from medmae.io.scan import scan_folder

    save_nifti(tmp_path / "zeros_t2.nii.gz", np.zeros((16, 16, 16), np.int16))
    save_nifti(tmp_path / "fives_t1.nii.gz", np.full((16, 16, 16), 5.0, np.float32))
    cases, bad = scan_folder(tmp_path, progress=False)
    assert not cases and sorted(p.rsplit("/", 1)[1] for p, _ in bad) == ["fives_t1.nii.gz", "zeros_t2.nii.gz"]
    assert all(why.startswith("constant image: every voxel holds") for _, why in bad)


def _refused_by_scan(tmp_path, path, *words):
    from medmae.io.scan import scan_folder

    cases, bad = scan_folder(path.parent, progress=False)
    found = [why for p, why in bad if p == str(path)]
    assert found, bad
    for w in words:
        assert w in found[0], found[0]


def test_absurd_scaling_is_named(tmp_path):
    _refused(scaled_nifti(tmp_path / "slope.nii.gz", 1e38), "scl_slope=1e+38", "absurd intensity scaling")
    _refused(scaled_nifti(tmp_path / "inter.nii", 1.0, -1e30), "scl_inter=-1e+30")
    fine = read_volume(scaled_nifti(tmp_path / "fine.nii.gz", 2.0, -1024)).array
    assert np.array_equal(fine, varied().astype(np.int32) * 2 - 1024)


def test_uint32_near_4e9_is_named_at_scan(tmp_path):
    wrapped = (varied(dtype=np.int32) - 500).astype(np.uint32)  # negative values stored unsigned
    path = save_nifti(tmp_path / "wrapped_t1.nii.gz", wrapped)
    _refused_by_scan(tmp_path, path, "uint32 values up to 4.295e+09", "negative numbers stored as unsigned")


@pytest.mark.parametrize("size, word", [(1e20, "1e+20 mm"), (1e-5, "1e-05 mm")])
def test_absurd_voxel_sizes(tmp_path, size, word):
    path = save_nifti(tmp_path / "huge_t1.nii.gz", varied(), np.diag([1.0, size, 1.0, 1.0]))
    _refused(path, f"voxel size {word} along axis 1", "wrong units")


def test_zero_pixdim_without_q_or_sform(tmp_path):
    _refused(zero_pixdim(tmp_path / "zero_pixdim.nii"), "pixdim) 0 along axis 1", "neither qform nor sform")


def test_detached_data_outside_the_folder(tmp_path, monkeypatch):
    inner, outer = tmp_path / "scans", tmp_path / "outside"
    inner.mkdir(), outer.mkdir()
    (outer / "secret.raw").write_bytes(bytes(range(256)) * 2)
    (inner / "ok.raw").write_bytes(bytes(range(256)) * 2)
    sub = inner / "deep"
    sub.mkdir()
    for header in (mhd_pointing(sub / "escape.mhd", "../../outside/secret.raw"),
                   nhdr_pointing(inner / "abs.nhdr", str(outer / "secret.raw"))):
        _refused(header, "lies outside the header's folder", "--allow-outside-data")
    assert read_volume(mhd_pointing(inner / "fine.mhd", "ok.raw")).shape == (8, 8, 8)
    monkeypatch.setenv(OUTSIDE_DATA_ENV, "1")
    assert read_volume(sub / "escape.mhd").shape == (8, 8, 8)
