"""Inputs added to the broken-input corpus by issue 19: bombs, absurd headers, hostile names
and manifests. Each is a few KB at most (bombs are crafted headers), so the corpus stays fast.

``scan_inputs`` returns scan-time :class:`Expect` entries (see broken_corpus.py);
``manifest_rows`` returns rows that must be refused or fail in preprocessing, with the path
and cause each must be reported with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk

from bombs import (gzip_overflow, mha_bomb, mhd_pointing, nhdr_pointing, nifti_bomb, nifti_header, nrrd_bomb,
                   scaled_nifti, varied, zero_pixdim)
from broken_corpus import SPINE, Expect
from ingest_helpers import THREE, copy_series, save_nifti


def _raw_nifti(path: Path, header: nib.Nifti1Header, payload: bytes) -> Path:
    path.write_bytes(header.binaryblock + b"\0" * 4 + payload)
    return path


def _tilted(dst: Path, degrees: float) -> Path:
    import math

    copy_series(THREE, dst)
    for f in dst.iterdir():
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + z * math.tan(math.radians(degrees)), z]
        ds.save_as(f)
    return dst


def scan_inputs(root: Path, outside: Path) -> list[Expect]:
    """Issue 19's scan-time inputs under ``root/i19``; ``outside`` is a folder beside ``root``."""
    d = root / "i19"
    d.mkdir(parents=True)
    out: list[Expect] = []
    add = out.append
    add(Expect("nii.gz bomb (16 GiB header, 1 KB file)", nifti_bomb(d / "bomb_t1.nii.gz"), "header declares 2048x2048x2048"))
    add(Expect(".nii bomb", nifti_bomb(d / "bomb_raw_t1.nii"), "above the limit"))
    add(Expect("NRRD bomb", nrrd_bomb(d / "bomb_t1.nrrd"), "header declares 4096x4096x4096"))
    add(Expect("MHA bomb", mha_bomb(d / "bomb_t1.mha"), "--max-image-mb"))
    add(Expect("gzip stream beyond its header", gzip_overflow(d / "long_t1.nii.gz"), "decompression bomb"))
    add(Expect("all zeros", save_nifti(d / "zeros_t1.nii.gz", np.zeros((16, 16, 16), np.int16)), "constant image"))
    add(Expect("constant float", save_nifti(d / "fives_t1.nii.gz", np.full((16, 16, 16), 5.5, np.float32)),
               "constant image: every voxel holds 5.5"))
    add(Expect("scl_slope=1e38", scaled_nifti(d / "slope_t1.nii.gz", 1e38), "scl_slope=1e+38"))
    add(Expect("scl_inter=-1e30", scaled_nifti(d / "inter_t1.nii", 1.0, -1e30), "absurd intensity scaling"))
    wrapped = (varied(dtype=np.int32) - 500).astype(np.uint32)
    add(Expect("uint32 near 4e9", save_nifti(d / "wrapped_t1.nii.gz", wrapped), "negative numbers stored as unsigned"))
    add(Expect("int32 near 1e9", save_nifti(d / "big_t1.nii.gz", varied(dtype=np.int32) * 10 ** 6), "beyond 2^24"))
    add(Expect("1e20 mm voxels", save_nifti(d / "huge_t1.nii.gz", varied(), np.diag([1e20, 1, 1, 1.0])),
               "voxel size 1e+20 mm along axis 0"))
    add(Expect("1e-5 mm voxels", save_nifti(d / "tiny_t1.nii.gz", varied(), np.diag([1, 1, 1e-5, 1.0])),
               "voxel size 1e-05 mm"))
    add(Expect("zero pixdim, no q/sform", zero_pixdim(d / "nopix_t1.nii"), "neither qform nor sform"))
    h = nifti_header((16, 16, 16))
    h["datatype"] = 9999
    add(Expect("unknown NIfTI datatype", _raw_nifti(d / "dtype_t1.nii", h, b"\0" * 64), "NIfTI"))
    add(Expect("NIfTI data shorter than its header", _raw_nifti(d / "short_t1.nii", nifti_header((32, 32, 32)),
                                                                b"\1" * 100), "NIfTI"))
    h = nifti_header((16, 16, 16))
    h["dim"][0] = 5
    h["dim"][4:6] = 2
    add(Expect("5D NIfTI", _raw_nifti(d / "five_t1.nii", h, varied().tobytes(order="F") * 4), "5D image"))
    rgb = sitk.Image([8, 8, 8], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(d / "rgb_t1.nrrd"))
    add(Expect("RGB NRRD", d / "rgb_t1.nrrd", "3-component (vector/RGB)"))
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.raw").write_bytes(bytes(range(256)) * 2)
    (d / "deep").mkdir()
    add(Expect(".mhd data ../..", mhd_pointing(d / "deep" / "escape_t1.mhd", "../../../outside/secret.raw"),
               "lies outside the header's folder"))
    add(Expect(".nhdr absolute data path", nhdr_pointing(d / "abs_t1.nhdr", str(outside / "secret.raw")),
               "--allow-outside-data"))
    add(Expect(".mhd data file missing", mhd_pointing(d / "nodata_t1.mhd", "gone.raw"), "not a readable image"))
    latin = os.fsencode(d) + b"/caf\xe9_t1.nii.gz"
    shutil.copy(SPINE, latin)
    add(Expect("non-UTF-8 file name", Path(f"{d}/caf\\xe9_t1.nii.gz"), "not valid UTF-8"))
    os.makedirs(os.fsencode(d) + b"/d\xfcsseldorf")
    shutil.copy(SPINE, os.fsencode(d) + b"/d\xfcsseldorf/x_t2.nii.gz")
    add(Expect("non-UTF-8 folder name", Path(f"{d}/d\\xfcsseldorf"), "folder file name is not valid UTF-8"))
    add(Expect("250-character file name", Path(shutil.copy(SPINE, d / ("n" * 243 + ".nii.gz"))), ok=True))
    add(Expect("DICOM with gantry tilt", _tilted(d / "tilted", 15.0), ok=True))
    mc = d / "mc4"
    mc.mkdir()
    for ch in ("echo1", "echo2", "t1post"):
        shutil.copy(SPINE, mc / f"pat_{ch}.nii.gz")
    add(Expect("image beside a multi-channel case", mc / "pat_t1post.nii.gz", "not named in --channels echo1,echo2"))
    add(Expect("its multi-channel case", mc / "pat_echo1.nii.gz", ok=True))
    return out


def manifest_rows(d: Path, cache: Path) -> tuple[list[list[str]], dict[str, tuple[Path | None, str]]]:
    """Rows (case_id, image, modality) for the preprocess corpus, and per case id the path
    (None: the manifest itself) and cause each must be reported with."""
    d.mkdir(parents=True, exist_ok=True)
    spine = str(SPINE)
    rows, why = [], {}

    def row(cid, image, modality, path, reason):
        rows.append([cid, image, modality])
        why[cid] = (path, reason)

    row("../../../victim_project", spine, "MR", None, "path separator")
    row("/abs/victim", spine, "MR", None, "path separator")
    row("..", spine, "MR", None, "names a folder above")
    row(".hidden", spine, "MR", None, "starts with '.'")
    row("x" * 200, spine, "MR", None, "longer than 128")
    row("back\\slash", spine, "MR", None, "path separator")
    row("tab\there", spine, "MR", None, "control characters")
    row("good", spine, "MR", None, "duplicate case_id 'good'")  # 'good' is the corpus's first row
    row("pet_row", spine, "PET", None, "modality must be one of")
    row("no_image", "", "MR", None, "no image path")
    two = d / "two"
    two.mkdir()
    for name in ("01.dcm", "02.dcm"):
        shutil.copy(THREE / name, two / name)
    row("two_slices", str(two), "CT", two, "below min_extent_mm")
    img = nib.load(SPINE)
    thin = save_nifti(d / "thin.nii.gz", np.asanyarray(img.dataobj)[:, :, :6], img.affine)
    row("thin", str(thin), "MR", thin, "6 mm along axis 2")
    (cache / "cases").mkdir(parents=True)
    victim = d / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (cache / "cases" / "linked").symlink_to(victim)
    row("linked", spine, "MR", cache / "cases" / "linked", "outside the output folder")
    bomb = nifti_bomb(d / "bomb.nii.gz")
    row("bomb", str(bomb), "MR", bomb, "header declares")
    wrapped = save_nifti(d / "wrapped.nii.gz", (varied(dtype=np.int32) - 500).astype(np.uint32))
    row("wrapped", str(wrapped), "MR", wrapped, "beyond 2^24")
    (d / "sub").mkdir()
    (d / "outside.raw").write_bytes(bytes(512))
    escape = mhd_pointing(d / "sub" / "escape.mhd", "../outside.raw")
    row("escape", str(escape), "MR", escape, "lies outside the header's folder")
    return rows, why
