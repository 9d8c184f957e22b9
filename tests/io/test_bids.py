"""BIDS raw images with derivatives: paired by entities, roles by suffix, contrasts grouped by --channels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ingest_helpers import DATA
from medmae.io.bids import bids_name, derivative_role
from medmae.io.scan import scan_folder


def _save(path, array, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    """sub-01 and sub-02/ses-01, ses-02 with T1w, FLAIR, T2w (the real spine T2 under three contrasts),
    sub-03 with a T1w only; fmriprep brain masks and dseg, a lesion mask, a probseg."""
    root = tmp_path_factory.mktemp("bids")
    spine = nib.load(DATA / "spine_t2.nii.gz")
    t2 = np.asarray(spine.dataobj, np.float32)
    cord = np.asarray(nib.load(DATA / "spine_t2_cordseg.nii.gz").dataobj).astype(np.uint8)
    body = (t2 > np.percentile(t2, 40)).astype(np.uint8)  # large, binary: a brain/body mask
    tissue = np.digitize(t2, np.percentile(t2, [40, 70, 90])).astype(np.uint8)  # 0..3
    contrasts = {"T1w": t2.max() - t2, "FLAIR": 0.5 * t2 + 30, "T2w": t2}
    for sub, ses in (("01", None), ("02", "01"), ("02", "02")):
        rel = f"sub-{sub}" + (f"/ses-{ses}" if ses else "")
        name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        for suffix, array in contrasts.items():
            _save(root / rel / "anat" / f"{name}_{suffix}.nii.gz", array, spine.affine)
        _save(root / "derivatives/fmriprep" / rel / "anat" / f"{name}_space-T1w_desc-brain_mask.nii.gz", body, spine.affine)
        _save(root / "derivatives/fmriprep" / rel / "anat" / f"{name}_dseg.nii.gz", tissue, spine.affine)
        _save(root / "derivatives/lesions" / rel / "anat" / f"{name}_label-lesion_mask.nii.gz", cord, spine.affine)
    _save(root / "derivatives/fmriprep/sub-01/anat/sub-01_label-GM_probseg.nii.gz", t2 / t2.max(), spine.affine)
    _save(root / "sub-03/anat/sub-03_T1w.nii.gz", contrasts["T1w"], spine.affine)
    _save(root / "derivatives/fmriprep/sub-03/anat/sub-03_desc-brain_mask.nii.gz", body, spine.affine)
    _save(root / "derivatives/fmriprep/sub-03/anat/sub-03_desc-preproc_T1w.nii.gz", contrasts["T1w"], spine.affine)
    return root


def test_contrasts_grouped_and_derivatives_paired_by_entities(bids):
    cases, bad = scan_folder(bids, progress=False, channels=["t1w", "flair", "t2w"])
    by = {c.case_id: c for c in cases}
    assert sorted(by) == ["sub-01__anat__sub-01", "sub-02__ses-01__anat__sub-02_ses-01",
                          "sub-02__ses-02__anat__sub-02_ses-02"]
    one = by["sub-01__anat__sub-01"]
    assert [p.rsplit("/", 1)[-1] for p in one.image] == ["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz", "sub-01_T2w.nii.gz"]
    assert one.sequence == "t1,flair,t2"
    assert one.mask.endswith("fmriprep/sub-01/anat/sub-01_space-T1w_desc-brain_mask.nii.gz")
    assert one.anatomy.endswith("fmriprep/sub-01/anat/sub-01_dseg.nii.gz")
    assert one.label.endswith("lesions/sub-01/anat/sub-01_label-lesion_mask.nii.gz")
    for ses in ("01", "02"):  # each session its own derivatives
        two = by[f"sub-02__ses-{ses}__anat__sub-02_ses-{ses}"]
        assert all(f"sub-02_ses-{ses}_" in p for p in (two.mask, two.anatomy, two.label))
    problems = {p.rsplit("/", 1)[-1]: why for p, why in bad}
    assert "lacks channel(s) flair, t2w" in problems["sub-03_T1w.nii.gz"]  # a subject without all contrasts
    assert "probseg" in problems["sub-01_label-GM_probseg.nii.gz"]
    assert "derivative image" in problems["sub-03_desc-preproc_T1w.nii.gz"]
    assert "unpaired mask map" in problems["sub-03_desc-brain_mask.nii.gz"]


def test_without_channels_space_picks_the_contrast(bids):
    cases, bad = scan_folder(bids, progress=False)
    by = {c.case_id: c for c in cases}
    assert len([c for c in cases if "sub-01" in c.case_id]) == 3  # each contrast its own case
    assert by["sub-01__anat__sub-01_T1w"].mask.endswith("sub-01_space-T1w_desc-brain_mask.nii.gz")
    assert not by["sub-01__anat__sub-01_FLAIR"].mask
    assert by["sub-03__anat__sub-03_T1w"].mask.endswith("sub-03_desc-brain_mask.nii.gz")  # its only image
    problems = {p.rsplit("/", 1)[-1]: why for p, why in bad}
    # a dseg of a subject with three contrasts on one grid names none of them: reported, not guessed
    assert "sub-01_dseg.nii.gz" in problems and "unpaired" in problems["sub-01_dseg.nii.gz"]


def test_names_and_roles():
    assert bids_name("sub-01_ses-2_acq-fast_desc-brain_mask") == (
        {"sub": "01", "ses": "2", "acq": "fast", "desc": "brain"}, "mask", [])
    assert bids_name("case01_seg") is None
    assert [derivative_role(s)[0] for s in ("sub-1_desc-brain_mask", "sub-1_label-lesion_mask", "sub-1_dseg",
                                            "sub-1_label-WM_probseg", "sub-1_T1w")] == [
        "mask", "label", "anatomy", "skip", ""]
