"""scan_folder on a tree of real scans, DICOM series, an nnU-Net dataset and broken files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ingest_helpers import DATA, DICOM, IDENTITY_STRINGS, J2K, THREE, copy_series, save_nifti
from medmae.io import read_volume
from medmae.io.hints import looks_like_ct, modality_hint, sequence_hint
from medmae.io.manifest import read_manifest, sha256_of, write_manifest
from medmae.io.pairing import role
from medmae.io.scan import assign_splits, scan_folder


def _copy(name, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / name, dst)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    _copy("ct_abdomen_3mm.nii.gz", root / "abdomen/ct_abdomen_3mm.nii.gz")
    _copy("ct_abdomen_3mm_seg.nii.gz", root / "abdomen/ct_abdomen_3mm_seg.nii.gz")
    _copy("ct_abdomen_3mm_seg.nii.gz", root / "abdomen/ct_abdomen_3mm_organs.nii.gz")
    _copy("mr_abdomen_3mm.nii.gz", root / "abdomen/mr_abdomen_3mm.nii.gz")
    _copy("mr_abdomen_3mm_seg.nii.gz", root / "abdomen/mr_abdomen_3mm_seg.nii.gz")
    _copy("brain1_t1c.nrrd", root / "brain/brain1_t1c.nrrd")
    _copy("brain1_tumour.nrrd", root / "brain/brain1_tumour.nrrd")
    _copy("spine_t2.nii.gz", root / "spine/spine_t2.nii.gz")
    _copy("spine_t2_cordseg.nii.gz", root / "spine/spine_t2_cordseg.nii.gz")
    _copy("ct_abdomen_3mm.nii.gz", root / "anon/scan_0001.nii.gz")  # no name hint: CT by intensity
    _copy("mr_abdomen_3mm.nii.gz", root / "anon/scan_0002.nii.gz")  # no name hint: MR by intensity
    copy_series(J2K, root / "dicom/ct_abdomen_j2k_series")
    _copy("dicom/ct_abdomen_j2k_series_seg.nii.gz", root / "dicom/ct_abdomen_j2k_series_seg.nii.gz")
    copy_series(THREE, root / "dicom/mixed")
    copy_series(J2K, root / "dicom/mixed")
    # nnU-Net dataset: two MR channels per case
    ds = root / "Dataset001_Pros"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    grid = np.diag([0.6, 0.6, 3.0, 1.0])
    for case in ("pros_001", "pros_002"):
        for ch in range(2):
            save_nifti(ds / f"imagesTr/{case}_{ch:04d}.nii.gz", rng.integers(0, 800, (12, 10, 8)).astype(np.int16), grid)
        save_nifti(ds / f"labelsTr/{case}.nii.gz", np.zeros((12, 10, 8), np.uint8), grid)
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"}}))
    # broken things
    (root / "broken").mkdir()
    (root / "broken/notes.nii.gz").write_text("not an image")
    data = (DATA / "spine_t2.nii.gz").read_bytes()
    (root / "broken/cut.nii.gz").write_bytes(data[: len(data) // 2])
    _copy("spine_t2_cordseg.nii.gz", root / "broken/lonely_seg.nii.gz")
    seg = read_volume(DATA / "spine_t2_cordseg.nii.gz")
    _copy("spine_t2.nii.gz", root / "mismatch/neck.nii.gz")
    save_nifti(root / "mismatch/neck_seg.nii.gz", seg.array[:, :, :40], seg.affine)
    gap = copy_series(J2K, root / "gap")
    sorted(gap.iterdir())[10].unlink()
    (root / "README.txt").write_text("a dataset")
    cases, bad = scan_folder(root, val_fraction=0.25, seed=3, progress=False)
    return root, cases, bad


def test_finds_every_case(tree):
    _, cases, _ = tree
    assert [c.case_id for c in cases] == [
        "Dataset001_Pros__pros_001", "Dataset001_Pros__pros_002",
        "abdomen__ct_abdomen_3mm", "abdomen__mr_abdomen_3mm", "anon__scan_0001", "anon__scan_0002",
        "brain__brain1_t1c", "dicom__ct_abdomen_j2k_series_s0", "dicom__mixed_s0", "dicom__mixed_s1",
        "spine__spine_t2"]


def test_modalities_sequences_and_maps(tree):
    root, cases, _ = tree
    by = {c.case_id: c for c in cases}
    expect = {  # case: (modality, sequence, label name, anatomy name)
        "abdomen__ct_abdomen_3mm": ("CT", "", "ct_abdomen_3mm_seg.nii.gz", "ct_abdomen_3mm_organs.nii.gz"),
        # a '_seg' map of 24 organs is TotalSegmentator's anatomy, not a label (unless the case has one)
        "abdomen__mr_abdomen_3mm": ("MR", "", "", "mr_abdomen_3mm_seg.nii.gz"),
        "anon__scan_0001": ("CT", "", "", ""),
        "anon__scan_0002": ("MR", "", "", ""),
        "brain__brain1_t1c": ("MR", "t1c", "brain1_tumour.nrrd", ""),
        "spine__spine_t2": ("MR", "t2", "spine_t2_cordseg.nii.gz", ""),
        "dicom__ct_abdomen_j2k_series_s0": ("CT", "", "", "ct_abdomen_j2k_series_seg.nii.gz"),
        "dicom__mixed_s0": ("CT", "", "", ""),
        "dicom__mixed_s1": ("CT", "", "", ""),
        "Dataset001_Pros__pros_001": ("MR", "t2,dwi", "pros_001.nii.gz", "")  # T2 and ADC channels,
    }
    for cid, (mod, seq, label, anatomy) in expect.items():
        c = by[cid]
        got = (c.modality, c.sequence, c.label.rsplit("/", 1)[-1], c.anatomy.rsplit("/", 1)[-1])
        assert got == (mod, seq, label, anatomy), cid
    nn = by["Dataset001_Pros__pros_001"]
    assert [p.rsplit("/", 1)[-1] for p in nn.image] == ["pros_001_0000.nii.gz", "pros_001_0001.nii.gz"]
    mixed = sorted(read_volume(by[f"dicom__mixed_s{i}"].image[0]).shape[2] for i in (0, 1))
    assert mixed == [3, 20] and all("#" in by[f"dicom__mixed_s{i}"].image[0] for i in (0, 1))


def test_bad_files_reported_and_scan_goes_on(tree):
    root, _, bad = tree
    problems = {p.replace(str(root) + "/", ""): why for p, why in bad}
    assert set(problems) == {"broken/notes.nii.gz", "broken/cut.nii.gz", "broken/lonely_seg.nii.gz",
                             "mismatch/neck_seg.nii.gz", "gap"}
    assert "not a readable NIfTI" in problems["broken/notes.nii.gz"]
    assert "truncated" in problems["broken/cut.nii.gz"]
    assert "without a matching image" in problems["broken/lonely_seg.nii.gz"]
    assert "does not match its image" in problems["mismatch/neck_seg.nii.gz"]
    assert "missing" in problems["gap"]


def test_sha256_and_split(tree):
    _, cases, _ = tree
    for c in cases:
        assert c.sha256 == sha256_of(c.source_paths())
    assert sum(c.split == "val" for c in cases) == round(0.25 * len(cases))
    again = [c.split for c in cases]
    assign_splits(cases, 0.25, seed=3)
    assert [c.split for c in cases] == again
    picks = set()
    for seed in range(5):  # other seeds pick other cases, always the same count
        assign_splits(cases, 0.25, seed=seed)
        assert sum(c.split == "val" for c in cases) == 3
        picks.add(tuple(c.split for c in cases))
    assert len(picks) > 1
    assign_splits(cases, 0.25, seed=3)


def test_manifest_roundtrip_without_identity(tree, tmp_path):
    _, cases, _ = tree
    out = write_manifest(cases, tmp_path / "manifest.csv")
    text = out.read_text()
    assert not [s for s in IDENTITY_STRINGS if s in text]
    back = read_manifest(out)
    assert [c.case_id for c in back] == [c.case_id for c in cases]
    assert read_volume(next(c for c in back if c.case_id == "dicom__mixed_s0").image[0]).shape[2] in (3, 20)


def test_name_rules():
    assert role("ct_abdomen_3mm_seg") == ("label", "ct_abdomen_3mm")
    assert role("brain1_tumour") == ("label", "brain1")
    assert role("spine_t2_cordseg") == ("label", "spine_t2")
    assert role("x_seg_total") == ("anatomy", "x")
    assert role("x_parc") == ("anatomy", "x")
    assert role("x_mask") == ("label", "x")
    assert role("seg") == ("image", "seg")
    assert sequence_hint("brain1_t1c") == "t1c" and sequence_hint("sub-01_T1w") == "t1"
    assert sequence_hint("T2 FLAIR AX") == "flair" and sequence_hint("patient1") == ""
    assert modality_hint("ct_abdomen") == "CT" and modality_hint("mr_abdomen") == "MR"
    assert modality_hint("scan_0001") == ""


def test_intensity_rule_on_real_scans():
    assert looks_like_ct(read_volume(DATA / "ct_abdomen_3mm.nii.gz").array)
    assert looks_like_ct(read_volume(DICOM / "ct_3slice_series").array)
    for mr in ("mr_abdomen_3mm.nii.gz", "brain1_t1c.nrrd", "spine_t2.nii.gz"):
        assert not looks_like_ct(read_volume(DATA / mr).array)
