"""Builders of the broken-input corpus (issue 6, item 9): each writes one broken or awkward
input under a root folder and says what the scan or preprocess report must say about it.

Built on the fly from the real scans in tests/data. Imported by test_broken_corpus.py.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from ingest_helpers import DATA, DICOM, J2K, THREE, copy_series, save_nifti

SPINE = DATA / "spine_t2.nii.gz"
SPINE_SEG = DATA / "spine_t2_cordseg.nii.gz"


@dataclass
class Expect:
    """``path`` must be reported with ``reason`` in its message (``ok``: it must become a case).

    A ``path`` ending in ``#`` stands for any series key of that DICOM folder.
    """

    name: str
    path: Path
    reason: str = ""
    ok: bool = False


def _spine():
    img = nib.load(SPINE)
    return np.asanyarray(img.dataobj), img.affine


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _nifti(root: Path, rel: str, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_nifti(path, array, _spine()[1] if affine is None else affine)


def scan_corpus(root: Path) -> list[Expect]:
    """Every input the scan must report (or, for ``ok`` ones, accept), written under ``root``."""
    arr, aff = _spine()
    out: list[Expect] = []
    add = out.append
    data = SPINE.read_bytes()
    cut = root / "files/truncated_t2.nii.gz"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(data[: len(data) // 2])
    add(Expect("truncated gzip", cut, "corrupt or truncated gzip stream"))
    crc = bytearray(data)
    crc[-8] ^= 0xFF
    (root / "files/crc_t2.nii.gz").write_bytes(bytes(crc))
    add(Expect("gzip CRC failure", root / "files/crc_t2.nii.gz", "CRC"))
    (root / "files/notes_t2.nii.gz").write_text("hello, this is not an image")
    add(Expect("text named .nii.gz", root / "files/notes_t2.nii.gz", "not gzip-compressed"))
    raw = nib.load(SPINE).to_bytes()
    (root / "files/cut_raw_t2.nii").write_bytes(raw[: len(raw) // 3])
    add(Expect("truncated .nii", root / "files/cut_raw_t2.nii", "NIfTI"))
    (root / "files/empty_t2.nii.gz").write_bytes(b"")
    add(Expect("empty file", root / "files/empty_t2.nii.gz", "empty file (0 bytes)"))
    add(Expect("2D image", _nifti(root, "files/slice2d_t2.nii.gz", arr[:, :, 20]), "2D image"))
    add(Expect("4D image", _nifti(root, "files/fmri4d_t2.nii.gz", np.stack([arr] * 3, -1)), "4D image"))
    nan = arr.astype(np.float32)
    nan[5:7, 5:7, 5] = np.nan
    add(Expect("NaN voxels", _nifti(root, "files/nan_t2.nii.gz", nan), "4 non-finite voxel(s)"))
    big = arr.astype(np.float32)
    big[30, 30, 30] = 3e38
    add(Expect("float overflow", _nifti(root, "files/overflow_t2.nii.gz", big), "near the float limit"))
    spikes = arr.astype(np.int16)
    spikes[1, 2, 3], spikes[40, 40, 40] = 32767, -32767
    add(Expect("int16 spikes", _nifti(root, "files/spikes_t2.nii.gz", spikes), "isolated voxel(s) at the int16 limit"))
    flat = nib.Nifti1Image(arr, None)
    flat.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)  # a zero voxel size: no volume
    nib.save(flat, str(root / "files/flat_t2.nii.gz"))
    add(Expect("singular affine", root / "files/flat_t2.nii.gz", "invalid geometry"))
    nrrd = (DATA / "brain1_t1c.nrrd").read_bytes()
    (root / "files/cut_t1c.nrrd").write_bytes(nrrd[: len(nrrd) // 2])
    add(Expect("truncated NRRD (ITK's reason whole)", root / "files/cut_t1c.nrrd", "expected 3276800 bytes"))
    (root / "files/junk_t1.mha").write_bytes(b"\x00\x01 not a MetaImage")
    add(Expect("junk .mha", root / "files/junk_t1.mha", "Unable to determine ImageIO reader"))
    # label maps
    _copy(SPINE, root / "labels/neck_t2.nii.gz")
    add(Expect("label of another shape", _nifti(root, "labels/neck_t2_seg.nii.gz", np.zeros((30, 55, 52), np.uint8)),
               "does not match its image"))
    _copy(SPINE, root / "labels2/neck_t2.nii.gz")
    frac = np.zeros(arr.shape, np.float32)
    frac[20:30, 20:30, 20:30] = 0.5
    add(Expect("fractional label", _nifti(root, "labels2/neck_t2_label.nii.gz", frac), "non-integer values"))
    _copy(SPINE, root / "labels3/neck_t2.nii.gz")
    neg = np.zeros(arr.shape, np.int16)
    neg[10:20, 10:20, 10:20] = -1
    add(Expect("negative label", _nifti(root, "labels3/neck_t2_lesion.nii.gz", neg), "negative values"))
    add(Expect("unpaired map by name", _copy(SPINE_SEG, root / "lonely/orphan_seg.nii.gz"), "unpaired label map"))
    _copy(SPINE, root / "amb/x_t2.nii.gz")
    _copy(SPINE, root / "amb/y_t2.nii.gz")
    add(Expect("map named like an image, two images on its grid", _copy(SPINE_SEG, root / "amb/z.nii.gz"),
               "ambiguous"))
    _copy(SPINE, root / "two/neck_t2.nii.gz")
    _copy(SPINE_SEG, root / "two/neck_t2_label.nii.gz")  # taken first (name order)
    add(Expect("second label map", _copy(SPINE_SEG, root / "two/neck_t2_seg.nii.gz"), "second label map"))
    # multi-contrast (--channels echo1,echo2)
    add(Expect("missing channel", _copy(SPINE, root / "mc/pat_echo1.nii.gz"), "lacks channel(s) echo2"))
    _copy(SPINE, root / "mc2/pat_echo1.nii.gz")
    _copy(SPINE, root / "mc2/pat_ECHO1.nii.gz")
    _copy(SPINE, root / "mc2/pat_echo2.nii.gz")
    add(Expect("two files for one channel", root / "mc2/pat_ECHO1.nii.gz", "2 files match channel 'echo1'"))
    _copy(SPINE, root / "mc3/pat_Echo2.nii.gz")
    add(Expect("two channels, any case", _copy(SPINE, root / "mc3/pat_echo1.nii.gz"), ok=True))
    # DICOM
    gap = copy_series(J2K, root / "dicom/gap")
    sorted(gap.iterdir())[10].unlink()
    add(Expect("DICOM gap", gap, "incomplete series: slice gap"))
    dup = copy_series(THREE, root / "dicom/dup")
    shutil.copy(dup / "02.dcm", dup / "02_copy.dcm")
    add(Expect("DICOM duplicate slice", dup, "duplicated slice position"))
    loc = copy_series(THREE, root / "dicom/localizer")
    ds = pydicom.dcmread(loc / "03.dcm")
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(loc / "03.dcm")
    add(Expect("DICOM localizer in the series", loc, "stray slice(s) (file(s) 3 of 3"))
    stray = copy_series(J2K, root / "dicom/stray")
    shutil.copy(THREE / "01.dcm", stray / "zz.dcm")
    add(Expect("DICOM stray slice", Path(f"{stray}#"), "stray slice"))
    add(Expect("DICOM unreadable slice", copy_series(THREE, root / "dicom/unreadable"), "permission denied"))
    pt = copy_series(THREE, root / "dicom/pet")
    for f in pt.iterdir():
        d = pydicom.dcmread(f)
        d.Modality = "PT"
        d.save_as(f)
    add(Expect("unsupported modality", Path(f"{pt}"), "unsupported modality 'PT'"))
    seg_alone = root / "dicom/segs/liver.dcm"
    add(Expect("DICOM SEG without its series", _copy(DICOM / "ct_3slice_liver_SEG.dcm", seg_alone),
               "unpaired label map (DICOM SEG)"))
    # links, permissions
    os.makedirs(root / "links")
    os.symlink(root / "links/b_t2.nii.gz", root / "links/a_t2.nii.gz")
    os.symlink(root / "links/a_t2.nii.gz", root / "links/b_t2.nii.gz")
    add(Expect("file symlink loop", root / "links/a_t2.nii.gz", "symlink loop"))
    os.symlink(root / "nowhere.nii.gz", root / "links/gone_t2.nii.gz")
    add(Expect("dangling symlink", root / "links/gone_t2.nii.gz", "dangling symlink"))
    os.symlink(root / "links", root / "links/again")
    add(Expect("folder symlink loop", root / "links/again", "symlink loop"))
    add(Expect("permission denied file", _copy(SPINE, root / "locked/secret_t2.nii.gz"), "permission denied"))
    add(Expect("unlistable folder", root / "closed", "cannot list this folder (permission denied)"))
    _copy(SPINE, root / "closed/hidden_t2.nii.gz")
    # awkward but usable
    add(Expect("odd file name", _copy(SPINE, root / 'odd/a; "b", c\nd_t2.nii.gz'), ok=True))
    bare = nib.Nifti1Image(arr, None)
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, str(root / "odd/noqform_t2.nii.gz"))
    add(Expect("NIfTI without qform/sform", root / "odd/noqform_t2.nii.gz", ok=True))
    os.symlink(DATA / "dicom", root / "linked_dicom")
    add(Expect("symlinked DICOM folder", root / "linked_dicom/ct_3slice_series", ok=True))
    mixed = copy_series(THREE, root / "dicom/mixed")
    copy_series(J2K, mixed)
    add(Expect("mixed series in one folder", Path(f"{mixed}#"), ok=True))
    return out
