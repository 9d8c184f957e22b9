"""Images, labels, anatomy maps and masks told apart in raw folders (issue 6, item 1).

Real scans and their real maps, copied under the names public datasets use, or under names
that say nothing (then only the voxels tell a map from a scan).
"""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets

from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.preprocess.cache import open_case
from medmae.io.manifest import read_manifest
from medmae.io.roles import parse_role_overrides, role_from_content, role_from_name
from medmae.io.scan import scan_folder
from medmae.preprocess.case import preprocess_case
from medmae.preprocess.config import PreprocessConfig
from medmae.preprocess.inverse import to_source_grid


def _put(src: str, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / src, dst)


@pytest.mark.parametrize("name,expected", [
    ("BraTS_001_SegMask", ("label", "BraTS_001")), ("case01-GroundTruth", ("label", "case01")),
    ("sub-01_T2w_manual-ROI", ("label", "sub-01_T2w")), ("mr1 Label", ("label", "mr1")),
    ("sub-01_T1w_desc-brain_mask", ("mask", "sub-01_T1w")), ("IXI002_BrainMask", ("mask", "IXI002")),
    ("x_seg_total", ("anatomy", "x")), ("sub-01_aparc+aseg", ("anatomy", "sub-01")),
    ("LESION_pat7", ("label", "pat7")), ("spine_t2_cordseg", ("label", "spine_t2")),
    ("sub-01_T1w", ("image", "sub-01_T1w")), ("BraTS_001_flair", ("image", "BraTS_001_flair")),
    ("seg", ("image", "seg")), ("ct_abdomen_3mm", ("image", "ct_abdomen_3mm")),
])
def test_name_conventions(name, expected):
    assert role_from_name(name) == expected


def test_public_dataset_names_pair_and_never_become_images(tmp_path):
    root = tmp_path / "raw"
    _put("brain1_t1c.nrrd", root / "brats/BraTS_001_t1c.nrrd")
    _put("brain1_tumour.nrrd", root / "brats/BraTS_001_SegMask.nrrd")
    _put("spine_t2.nii.gz", root / "a/case01.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "a/case01-GroundTruth.nii.gz")
    _put("spine_t2.nii.gz", root / "bids/sub-01_T2w.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "bids/sub-01_T2w_manual-ROI.nii.gz")
    _put("mr_abdomen_3mm.nii.gz", root / "mr/mr1.nii.gz")
    _put("mr_abdomen_3mm_seg.nii.gz", root / "mr/mr1 Label.nii.gz")
    cases, bad = scan_folder(root, progress=False)
    assert bad == []
    by = {c.case_id: c for c in cases}
    assert sorted(by) == ["a__case01", "bids__sub-01_T2w", "brats__BraTS_001_t1c", "mr__mr1"]
    assert by["brats__BraTS_001_t1c"].label.endswith("BraTS_001_SegMask.nrrd")
    assert by["a__case01"].label.endswith("case01-GroundTruth.nii.gz")
    assert by["mr__mr1"].label.endswith("mr1 Label.nii.gz")


def test_content_check_pairs_maps_named_like_images(tmp_path, capsys):
    root = tmp_path / "raw"
    _put("ct_abdomen_3mm.nii.gz", root / "p1/scan.nii.gz")
    _put("ct_abdomen_3mm_seg.nii.gz", root / "p1/other.nii.gz")  # 41 organ labels -> anatomy
    _put("spine_t2.nii.gz", root / "p2/t2.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "p2/extra.nii.gz")  # binary, 2 % of the grid -> label
    _put("spine_t2.nii.gz", root / "images/a.nii.gz")  # images/ + masks/ with equal names
    _put("spine_t2.nii.gz", root / "images/b.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "masks/a.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "masks/zzz.nii.gz")  # no image of that name
    _put("spine_t2.nii.gz", root / "amb/x.nii.gz")  # two images on one grid: ambiguous
    _put("spine_t2.nii.gz", root / "amb/y.nii.gz")
    _put("spine_t2_cordseg.nii.gz", root / "amb/z.nii.gz")
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "roles: images 6 (in 6 case(s)), labels 2, anatomy maps 1, masks 0, unpaired maps 2" in printed
    by = {c.case_id: c for c in read_manifest(out)}
    assert sorted(by) == ["amb__x", "amb__y", "images__a", "images__b", "p1__scan", "p2__t2"]
    assert by["p1__scan"].anatomy.endswith("p1/other.nii.gz") and by["p2__t2"].label.endswith("p2/extra.nii.gz")
    assert by["images__a"].label.endswith("masks/a.nii.gz") and not by["images__b"].label
    problems = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]: why for p, why in
                [tuple(r.split(",", 1)) for r in (tmp_path / "manifest.bad.csv").read_text().splitlines()[1:]]}
    assert "unpaired label map" in problems["masks/zzz.nii.gz"] and "no image beside it" in problems["masks/zzz.nii.gz"]
    amb = problems["amb/z.nii.gz"]
    assert "ambiguous" in amb and "binary" in amb and "--roles 'z.nii.gz=image'" in amb and "_seg.nii.gz" in amb
    # the option that fixes it: z is a scan after all / names alone
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress", "--roles", "Z.nii.gz=image"]) == 0
    assert "amb__z" in {c.case_id for c in read_manifest(out)}
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress", "--no-content-check"]) == 0
    names_only = {c.case_id for c in read_manifest(out)}  # masks/ is a map folder by its name alone
    assert len(names_only) == 9 and not any(cid.startswith("masks__") for cid in names_only)
    with pytest.raises(ValueError, match="ROLE one of"):
        parse_role_overrides(["*.nii=picture"])


def test_brain_mask_found_by_content_feeds_the_body_mask(tmp_path):
    """MNI152 T1 with its brain mask under a name that says nothing: the mask is recognised,
    paired, and preprocessing uses it as the body instead of thresholding."""
    root = tmp_path / "raw/subj"
    root.mkdir(parents=True)
    t1 = datasets.load_mni152_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2)
    nib.save(nib.Nifti1Image(np.asanyarray(t1.dataobj).astype(np.float32), t1.affine), str(root / "T1.nii.gz"))
    nib.save(nib.Nifti1Image(np.asanyarray(brain.dataobj).astype(np.uint8), brain.affine), str(root / "ref.nii.gz"))
    assert role_from_content(np.asanyarray(brain.dataobj))[0] == "mask"
    cases, bad = scan_folder(tmp_path / "raw", progress=False)
    assert bad == [] and len(cases) == 1 and cases[0].mask.endswith("ref.nii.gz")
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 16
    preprocess_case(cases[0], cfg, tmp_path / "c1")
    with_mask = open_case(tmp_path / "c1/cases" / cases[0].case_id)
    cases[0].mask = ""
    preprocess_case(cases[0], cfg, tmp_path / "c2")
    computed = open_case(tmp_path / "c2/cases" / cases[0].case_id)
    brain_ml = float(np.asanyarray(brain.dataobj).sum()) * 8e-3  # 2 mm voxels
    body_ml = with_mask.meta["body_voxels"] * 27e-3  # 3 mm voxels
    assert abs(body_ml - brain_ml) / brain_ml < 0.05 and with_mask.meta["mask"] == "ref.nii.gz"
    ref = np.asanyarray(brain.dataobj) > 0

    def dice(case) -> float:
        back = to_source_grid(np.asarray(case.map("body"), np.float32), case.meta, order=0) > 0.5
        return 2.0 * (back & ref).sum() / (back.sum() + ref.sum())

    assert dice(with_mask) > 0.975  # the supplied mask, up to 2 mm -> 3 mm -> 2 mm resampling
    assert with_mask.meta["body_voxels"] != computed.meta["body_voxels"]  # not the thresholded body


def test_role_named_folders_and_generic_mask_names(tmp_path):
    """images/ + anatomy/ + labels/ with equal file names (the layout `medmae synth` and many
    public sets use), and a brain mask called only '_mask'."""
    root = tmp_path / "raw"
    _put("ct_abdomen_3mm.nii.gz", root / "set/images/c1.nii.gz")
    _put("ct_abdomen_3mm_seg.nii.gz", root / "set/anatomy/c1.nii.gz")
    seg = nib.load(DATA / "ct_abdomen_3mm_seg.nii.gz")
    liver = (np.asanyarray(seg.dataobj) == 5).astype(np.uint8)
    (root / "set/labels").mkdir()
    nib.save(nib.Nifti1Image(liver, seg.affine), str(root / "set/labels/c1.nii.gz"))
    mni = root / "mni"
    mni.mkdir()
    t1 = datasets.load_mni152_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2)
    nib.save(nib.Nifti1Image(np.asanyarray(t1.dataobj).astype(np.float32), t1.affine), str(mni / "T1.nii.gz"))
    nib.save(nib.Nifti1Image(np.asanyarray(brain.dataobj).astype(np.uint8), t1.affine), str(mni / "T1_mask.nii.gz"))
    cases, bad = scan_folder(root, progress=False)
    assert bad == []
    by = {c.case_id: c for c in cases}
    c1, t1_case = by["set__images__c1"], by["mni__T1"]
    assert c1.anatomy.endswith("anatomy/c1.nii.gz") and c1.label.endswith("labels/c1.nii.gz")
    assert t1_case.mask.endswith("T1_mask.nii.gz") and not t1_case.label  # '_mask' with brain-mask content
    cases, bad = scan_folder(root, progress=False, content_check=False)  # names and folders alone
    assert {c.case_id for c in cases} == {"set__images__c1", "mni__T1"}
