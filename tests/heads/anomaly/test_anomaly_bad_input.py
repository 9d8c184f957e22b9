"""Scans that do not fit the model are reported by file, with the reason; the rest is scored."""

from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.run import score_inputs
from medmae.io.manifest import Case, read_manifest, write_manifest

DATA = Path(__file__).resolve().parents[2] / "data"


def test_channel_modality_and_mask_grid_mismatches_name_the_file(pretrained, tmp_path):
    good = read_manifest(pretrained.healthy_test)[0]
    img = nib.load(good.image[0])
    small = tmp_path / "lesion_other_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), img.affine), small)
    cases = [
        Case("two_channels", [good.image[0], good.image[0]], "MR", sequence="t1"),
        Case("ct_scan", [str(DATA / "ct_abdomen_3mm.nii.gz")], "CT"),
        Case("bad_mask", [good.image[0]], "MR", sequence="t1", label=str(small)),
        Case("fine", [good.image[0]], "MR", sequence="t1"),
        Case("flair", [good.image[0]], "MR", sequence="flair"),
    ]
    manifest = write_manifest(cases, tmp_path / "batch.csv")
    result = score_inputs([str(manifest)], pretrained.run, tmp_path / "out", AnomalyConfig(), progress=False)
    assert [r["case_id"] for r in result.records] == ["fine"]
    assert len(result.bad) == 4
    two, ct, mask, flair = result.bad
    assert two == (good.image[0], "2 channel(s) given, the model takes 1 (trained on 1-channel scans of T1)")
    assert ct == (str(DATA / "ct_abdomen_3mm.nii.gz"), "modality CT, the model was trained on MR only")
    assert mask[0] == str(small) and "shape (20, 20, 20) differs" in mask[1]
    assert flair[0] == good.image[0] and "sequence 'flair'" in flair[1]
    assert (tmp_path / "out" / "bad.csv").read_text().count("\n") == 5


def test_a_bug_is_not_a_bad_scan_but_unreadable_and_constant_scans_are(pretrained, tmp_path, monkeypatch):
    """Only scan errors and the I/O errors of reading a scan become bad cases; a programming
    error (here a ValueError raised while deriving the maps) stops the batch."""
    import pytest

    import medmae.heads.anomaly.case as case_mod

    good = read_manifest(pretrained.healthy_test)[0]
    img = nib.load(good.image[0])
    truncated = tmp_path / "truncated_t1.nii.gz"
    truncated.write_bytes(Path(good.image[0]).read_bytes()[:5000])
    constant = tmp_path / "constant_t1.nii.gz"
    nib.save(nib.Nifti1Image(np.full(img.shape, 100.0, np.float32), img.affine), constant)
    result = score_inputs([str(truncated), str(constant), good.image[0]], pretrained.run, tmp_path / "out",
                          AnomalyConfig(), progress=False)
    assert len(result.records) == 1 and [p for p, _ in result.bad] == [str(truncated), str(constant)]

    def broken(*args, **kwargs):
        raise ValueError("a bug in combined_map")

    monkeypatch.setattr(case_mod, "combined_map", broken)
    with pytest.raises(ValueError, match="a bug in combined_map"):
        score_inputs([good.image[0]], pretrained.run, tmp_path / "out2", AnomalyConfig(), progress=False)
