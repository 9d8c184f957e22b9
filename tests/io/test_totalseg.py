"""TotalSegmentator's output folder (segmentations/<organ>.nii.gz beside the CT): one label map
with TotalSegmentator's ids and a names table, the CT's anatomy map unless asked otherwise."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.config.base import load_config
from medmae.data.cache import list_cases
from medmae.io import read_volume
from medmae.io.manifest import read_manifest
from medmae.io.totalseg import TOTAL, names_table
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig


@pytest.fixture(scope="module")
def totalseg(tmp_path_factory):
    """case01/ct.nii.gz + case01/segmentations/<organ>.nii.gz: the real CT's TotalSegmentator
    map split into one binary mask per organ, as `TotalSegmentator -i ct.nii.gz -o segmentations` writes."""
    root = tmp_path_factory.mktemp("totalseg")
    case = root / "case01"
    (case / "segmentations").mkdir(parents=True)
    shutil.copy(DATA / "ct_abdomen_3mm.nii.gz", case / "ct.nii.gz")
    seg = nib.load(DATA / "ct_abdomen_3mm_seg.nii.gz")
    ids = np.asarray(seg.dataobj)
    for i in np.unique(ids)[1:]:
        nib.save(nib.Nifti1Image((ids == i).astype(np.uint8), seg.affine), str(case / "segmentations" / f"{TOTAL[i - 1]}.nii.gz"))
    return root, ids


def test_folder_becomes_the_ct_anatomy_map_with_its_names(totalseg, tmp_path, capsys):
    root, ids = totalseg
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "anatomy maps 1" in printed and "0 bad file(s)" in printed and "unpaired maps 0" in printed
    (case,) = read_manifest(out)
    assert case.case_id == "case01__ct" and case.modality == "CT"
    assert case.anatomy.endswith("case01/segmentations") and not case.label
    combined = read_volume(case.anatomy)
    assert np.array_equal(combined.array, ids)  # TotalSegmentator's own ids: 1 spleen ... 5 liver
    assert np.allclose(combined.affine, read_volume(case.image[0]).affine)
    table = json.loads((tmp_path / "manifest.labels.json").read_text())[case.case_id]["anatomy"]
    assert len(table) == len(np.unique(ids)) - 1
    assert table["1"] == "spleen" and table["5"] == "liver" and table["3"] == "kidney_left"

    cfg = load_config(PreprocessConfig, None, ["spacing=[6,6,6]", "priors.supervoxels=0"])
    report = preprocess_manifest(out, tmp_path / "cache", cfg, workers=0, progress=False)
    assert len(report.done) == 1 and not report.bad
    (cached,) = list_cases(tmp_path / "cache", split=None)
    assert cached.has("anatomy") and not cached.has("label")
    assert {1, 2, 3, 5} <= set(np.unique(cached.map("anatomy")).tolist())


def test_asked_for_it_is_the_label(totalseg, tmp_path):
    root, _ = totalseg
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress", "--totalseg-role", "label"]) == 0
    (case,) = read_manifest(out)
    assert case.label.endswith("case01/segmentations") and not case.anatomy
    assert json.loads((tmp_path / "manifest.labels.json").read_text())[case.case_id]["label"]["5"] == "liver"


def test_names_table_and_a_broken_mask(tmp_path):
    assert names_table(["liver", "spleen"]) == {1: "spleen", 5: "liver"}
    assert names_table(["lung_left", "liver"]) == {5: "liver", 10: "lung_left"}  # total_mr ids
    folder = tmp_path / "segmentations"
    folder.mkdir()
    grid = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), grid), str(folder / "liver.nii.gz"))
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 3, np.uint8), grid), str(folder / "spleen.nii.gz"))
    from medmae.io.errors import ScanError

    with pytest.raises(ScanError, match="spleen.nii.gz.*expected a binary 0/1 mask"):
        read_volume(folder)


def test_a_seg_file_of_many_organs_is_anatomy_unless_roles_say_label(tmp_path):
    """The shipped `_seg` maps (TotalSegmentator --ml output, 41 organs) are anatomy maps; a
    binary `_cordseg` stays a label; --roles '*_seg*=label' keeps the name's label role."""
    from medmae.io.scan import scan_folder

    for name in ("ct_abdomen_3mm.nii.gz", "ct_abdomen_3mm_seg.nii.gz", "spine_t2.nii.gz", "spine_t2_cordseg.nii.gz"):
        shutil.copy(DATA / name, tmp_path / name)
    cases, bad = scan_folder(tmp_path, progress=False)
    by = {c.case_id: c for c in cases}
    assert not bad and by["ct_abdomen_3mm"].anatomy.endswith("_seg.nii.gz") and not by["ct_abdomen_3mm"].label
    assert by["spine_t2"].label.endswith("_cordseg.nii.gz") and not by["spine_t2"].anatomy
    cases, bad = scan_folder(tmp_path, progress=False, roles=[("*_seg.nii.gz", "label")])
    by = {c.case_id: c for c in cases}
    assert by["ct_abdomen_3mm"].label.endswith("_seg.nii.gz") and not by["ct_abdomen_3mm"].anatomy
