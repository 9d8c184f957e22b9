"""Multi-contrast cases from plain folders with --channels (issue 6, item 2)."""

from __future__ import annotations

import shutil

import pytest

from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.preprocess.cache import read_index
from medmae.io.channels import parse_channels
from medmae.io.manifest import read_manifest


def _put(src: str, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / src, dst)


def test_channels_group_patient_folders_and_flat_datasets(tmp_path, capsys):
    root = tmp_path / "raw"
    for ch in ("FLAIR", "T1w", "T2"):  # a patient folder, one file per contrast (order on disk differs)
        _put("spine_t2.nii.gz", root / f"p1/{ch}.nii.gz")
    for ch in ("flair", "t1", "t2"):  # a flat BraTS-like folder with the label beside the channels
        _put("brain1_t1c.nrrd", root / f"brats/BraTS_001_{ch}.nrrd")
    _put("brain1_tumour.nrrd", root / "brats/BraTS_001_seg.nrrd")
    _put("spine_t2.nii.gz", root / "p2/flair.nii.gz")  # lacks t2
    _put("spine_t2.nii.gz", root / "p2/t1.nii.gz")
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress", "--channels", "FLAIR,t1,t2"]) == 0
    printed = capsys.readouterr().out
    cases = {c.case_id: c for c in read_manifest(out)}
    assert sorted(cases) == ["brats__BraTS_001", "p1"]
    p1, brats = cases["p1"], cases["brats__BraTS_001"]
    assert [p.rsplit("/", 1)[1] for p in p1.image] == ["FLAIR.nii.gz", "T1w.nii.gz", "T2.nii.gz"]
    assert p1.sequence == "flair,t1,t2" and brats.sequences == ["flair", "t1", "t2"]
    assert brats.label.endswith("BraTS_001_seg.nrrd")
    assert "lacks channel(s) t2 of --channels flair,t1,t2 (has flair, t1)" in printed
    assert "roles: images 6 (in 2 case(s)), labels 1" in printed
    cache = tmp_path / "cache"
    assert main(["preprocess", str(out), "--out", str(cache), "--workers", "0", "--no-progress",
                 "spacing=[3,3,6.5]", "priors.supervoxels=16"]) == 0
    index = {r["case_id"]: r for r in read_index(cache)}
    assert int(index["p1"]["channels"]) == 3 and index["p1"]["sequence"] == "flair,t1,t2"
    with pytest.raises(ValueError, match="distinct"):
        parse_channels("t1,,t2")


@pytest.mark.parametrize("keep", [False, True])
def test_images_no_channel_names_are_left_out_and_the_mask_pairs_with_the_case(tmp_path, capsys, keep):
    """Issue 19, item 10: T1POST beside --channels flair,t1,t2 is no second case of the patient,
    and the lesion map on the shared grid pairs with the multi-channel case."""
    root = tmp_path / "raw"
    for ch in ("FLAIR", "T1", "T2", "T1POST"):
        _put("spine_t2.nii.gz", root / f"pat7/{ch}.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "pat7/lesion.nii.gz")
    out = tmp_path / "m.csv"
    args = ["data", "scan", str(root), "--out", str(out), "--no-progress", "--channels", "flair,t1,t2"]
    assert main(args + (["--keep-other-images"] if keep else [])) == 0
    printed = capsys.readouterr().out
    cases = {c.case_id: c for c in read_manifest(out)}
    assert sorted(cases) == (["pat7", "pat7__T1POST"] if keep else ["pat7"])
    assert cases["pat7"].label.endswith("pat7/lesion.nii.gz") and len(cases["pat7"].image) == 3
    left_out = "T1POST.nii.gz: not named in --channels flair,t1,t2: left out beside the multi-channel case(s) of pat7/"
    assert (left_out in printed) != keep
